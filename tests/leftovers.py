"""What a run or a write may leave behind when it is cut short: the tests' one definition.

`cl_runner.records` writes each file as a hidden `.<stem>.tmp<suffix>` beside it and renames it
into place; downloads write `<name>.part`. A glob of `*.tmp` matches neither, so a test looking
for leftovers must use this.
"""

from __future__ import annotations

from pathlib import Path


def temporary_files(folder: Path) -> list[str]:
    """Names of the temporary files anywhere under `folder`."""
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]
