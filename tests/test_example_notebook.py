"""examples/forgetting.ipynb runs end to end in a Jupyter kernel (nbclient, ipykernel), with
one epoch per task on a tiny MNIST look-alike, so the example can never go stale."""

from __future__ import annotations

import base64
import json

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import REPO

NOTEBOOK = REPO / "examples" / "forgetting.ipynb"
EXPERIMENTS = ["naive", "replay10", "replay1", "scratch", "ewc", "ewc_replay"]


@pytest.mark.slow  # a kernel, torch and 10 short runs: about a minute on a busy machine
def test_the_example_notebook_runs_and_shows_its_figures_and_table(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("CL_RUNNER_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("CL_RUNNER_NOTEBOOK_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("CL_RUNNER_NOTEBOOK_OVERRIDES", f"data.root={tiny_mnist} data.verify=false data.download=false")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert "parameters" in notebook.cells[2].metadata.get("tags", [])  # papermill's parameters cell
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o.data["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2 * len(EXPERIMENTS)  # each experiment's accuracy matrix and curves, inline
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    (base,) = (tmp_path / "outputs" / "forgetting").iterdir()
    for name in EXPERIMENTS:
        summary = json.loads((base / name / "summary.json").read_text())
        assert summary["status"] == "completed", name
    epochs = json.loads((base / "ewc_replay" / "summary.json").read_text())["accuracy_matrix"]
    assert len(epochs) == 2
    comparison = next(o.data["text/html"] for cell in notebook.cells if "comparison" in cell.source
                      for o in cell.outputs if "text/html" in o.get("data", {}))
    assert all(f">{name}<" in comparison for name in EXPERIMENTS) and "1 epoch per task" in comparison
    assert len(list((base / "replay-sweep").glob("share-*/summary.json"))) == 4
