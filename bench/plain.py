"""The plain-PyTorch baseline of `bench/startup.py`: one Split MNIST run as a researcher would
write it without cl-runner, doing the same work as the `cl-run` command it is compared with.

The same data (the four MNIST .gz files, decompressed and parsed with numpy, no checksum), the
same 90/10 train/validation split drawn from the seed, tasks 0-4 then 5-9 (class-incremental,
one 10-way head), an MLP 784-W-10 with LeakyReLU, a fresh Adam (lr 1e-3) per task, batches
of 1024 in a seeded random order; every task's validation split evaluated after every epoch,
and the test split too before training and after each task's last epoch; the rows written to
a CSV. With --ewc-alpha, EWC as cl-run's defaults do it: after task 0, the empirical Fisher
diagonal over task 0's validation split (per-example gradients with torch.func, in chunks;
or, with --fisher closed, this MLP's closed form in a few matrix products, as fast as
cl-runner's), each tensor divided by its maximum, and alpha * sum F (theta - theta*)^2 added
to the loss.

It prints one JSON line: the wall time of each phase (import, data, model -- with the first
Adam, which imports torch._dynamo --, training, evaluation, outputs) and the final test
accuracies. On CUDA (--device cuda) every .item() of the evaluation is a sync, as usual in
such scripts.

    python bench/plain.py --data data/mnist --width 64 --epochs 1 --out /tmp/plain
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402 - the imports are part of what is timed
import csv  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.func import functional_call, grad, vmap  # noqa: E402

FILES = {"train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
         "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz"}
TASKS = ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(folder: Path, seed: int, device: torch.device) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    arrays = {key: torch.from_numpy(read_idx(folder / name).copy()) for key, name in FILES.items()}
    train_x, train_y = arrays["train_x"].float().div(255).flatten(1), arrays["train_y"].long()
    test_x, test_y = arrays["test_x"].float().div(255).flatten(1), arrays["test_y"].long()
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))
    n_val = round(len(train_y) * 0.1)
    pools = {"train": (train_x[order[n_val:]], train_y[order[n_val:]]),
             "val": (train_x[order[:n_val]], train_y[order[:n_val]]), "test": (test_x, test_y)}
    tasks = []
    for classes in TASKS:
        task = {}
        for split, (x, y) in pools.items():
            keep = torch.isin(y, torch.tensor(classes))
            task[split] = (x[keep].to(device), y[keep].to(device))
        tasks.append(task)
    return tasks


@torch.no_grad()
def evaluate(model: nn.Module, tasks: list, split: str) -> list[tuple[float, float]]:
    model.eval()
    results = []
    for task in tasks:
        x, y = task[split]
        loss = correct = 0.0
        for start in range(0, len(y), 10_000):
            logits = model(x[start : start + 10_000])
            loss += F.cross_entropy(logits, y[start : start + 10_000], reduction="sum").item()
            correct += (logits.argmax(1) == y[start : start + 10_000]).sum().item()
        results.append((loss / len(y), correct / len(y)))
    model.train()
    return results


def fisher_diagonal(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 256) -> dict[str, torch.Tensor]:
    """Mean squared per-example gradient of the cross-entropy, each tensor divided by its max."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss_of(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_example = vmap(grad(loss_of), in_dims=(None, 0, 0))
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    for start in range(0, len(y), chunk):
        grads = per_example(params, x[start : start + chunk], y[start : start + chunk])
        for name, g in grads.items():
            fisher[name] += g.pow(2).sum(0)
    return {name: f / f.max() for name, f in fisher.items()}  # the mean's 1/N cancels out


def fisher_closed_form(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same Fisher for this one-hidden-layer MLP without per-example gradients: a Linear
    layer's per-example weight gradient is the outer product (output gradient) x (input), so
    its square summed over examples is (output gradient^2)^T (input^2)."""
    first, act, last = model
    with torch.no_grad():
        hidden = first(x)
        out_grad = torch.softmax(last(act(hidden)), 1) - F.one_hot(y, last.out_features)  # d loss / d logits
        hidden_grad = (out_grad @ last.weight) * torch.where(hidden > 0, 1.0, act.negative_slope)
        squares = {"0.weight": hidden_grad.pow(2).T @ x.pow(2), "0.bias": hidden_grad.pow(2).sum(0),
                   "2.weight": out_grad.pow(2).T @ act(hidden).pow(2), "2.bias": out_grad.pow(2).sum(0)}
    return {name: f / f.max() for name, f in squares.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the folder of the four MNIST .gz files")
    parser.add_argument("--out", type=Path, required=True, help="the folder for metrics.csv")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--ewc-alpha", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fisher", choices=("vmap", "closed"), default="vmap",
                        help="EWC's Fisher: per-example gradients (torch.func) or this MLP's closed form")
    args = parser.parse_args()
    seconds = {"import": time.perf_counter() - STARTED}

    clock = time.perf_counter()
    tasks = load(args.data, args.seed, torch.device(args.device))
    seconds["data"] = time.perf_counter() - clock
    clock = time.perf_counter()
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(784, args.width), nn.LeakyReLU(), nn.Linear(args.width, 10)).to(args.device)
    seconds["model"] = time.perf_counter() - clock
    rows, penalties = [], []
    seconds["training"] = seconds["evaluation"] = 0.0

    def log(task: int, epoch: int, splits: tuple[str, ...]) -> list:
        clock = time.perf_counter()
        for split in splits:
            for eval_task, (loss, acc) in enumerate(evaluate(model, tasks, split)):
                rows.append((task, epoch, eval_task, split, loss, acc))
        seconds["evaluation"] += time.perf_counter() - clock
        return [row[5] for row in rows[-len(tasks):]]

    log(-1, 0, ("val", "test"))
    shuffle = torch.Generator().manual_seed(args.seed)
    for t, task in enumerate(tasks):
        clock = time.perf_counter()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # the first one imports torch._dynamo
        seconds["model"] += time.perf_counter() - clock
        x, y = task["train"]
        for epoch in range(1, args.epochs + 1):
            clock = time.perf_counter()
            for batch in torch.randperm(len(y), generator=shuffle).to(args.device).split(1024):
                loss = F.cross_entropy(model(x[batch]), y[batch])
                for fisher, anchor in penalties:
                    loss = loss + args.ewc_alpha * sum((f * (p - a).pow(2)).sum() for f, p, a in
                                                       zip(fisher.values(), model.parameters(), anchor.values()))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            seconds["training"] += time.perf_counter() - clock
            accuracies = log(t, epoch, ("val", "test") if epoch == args.epochs else ("val",))
        if args.ewc_alpha is not None and t < len(tasks) - 1:
            clock = time.perf_counter()
            fisher = (fisher_diagonal if args.fisher == "vmap" else fisher_closed_form)(model, *task["val"])
            penalties.append((fisher, {n: p.detach().clone() for n, p in model.named_parameters()}))
            seconds["training"] += time.perf_counter() - clock

    clock = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "metrics.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["train_task", "epoch", "eval_task", "split", "loss", "acc"])
        writer.writerows(rows)
    seconds["outputs"] = time.perf_counter() - clock
    print(json.dumps({"seconds": {k: round(v, 3) for k, v in seconds.items()}, "final_test_acc": accuracies}))


if __name__ == "__main__":
    main()
