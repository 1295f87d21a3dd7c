"""The model, data and training shared by the Stamen and the Flower twin apps.

Both twins import this module, so they train the same MLP on the same digits partitions
with the same seeds and hyperparameters; only the framework differs. Settings come from
BENCH_* environment variables so one app serves every scenario.
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.datasets import load_digits
from torch import nn

# One thread, as in examples/quickstart-pytorch: this MLP trains no faster on more, and
# ten nodes' OpenMP threads spinning on two cores would measure contention, not frameworks.
torch.set_num_threads(1)

BATCH_SIZE = 32
LR = 0.1
SEED = 42


def setting(name: str, default: str) -> str:
    return os.environ.get(f"BENCH_{name}", default)


MODE = setting("MODE", "train")  # "train" | "echo" (return the parameters untouched)
EXTRA_MIB = int(setting("EXTRA_MIB", "0"))  # a dead-weight buffer sent with the model
# "1": each node returns the buffer changed (+ its partition id + 1), so every byte of
# the model is new in every reply and every round: no transfer can be skipped by its hash.
EXTRA_CHANGES = setting("EXTRA_CHANGES", "0") == "1"
HIDDEN = int(setting("HIDDEN", "64"))  # 0: a tiny linear model (round-latency scenario)
MARK_DIR = setting("MARK_DIR", "")


def make_model() -> nn.Module:
    torch.manual_seed(SEED)
    if HIDDEN == 0:
        return nn.Linear(64, 10)
    return nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))


def initial_ndarrays() -> list[npt.NDArray[Any]]:
    arrays = [p.detach().numpy().copy() for p in make_model().state_dict().values()]
    if EXTRA_MIB:
        arrays.append(np.zeros(EXTRA_MIB * 2**20 // 4, dtype=np.float32))
    return arrays


@cache
def _digits() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(SEED).permutation(len(y))
    return (x[order] / 16.0).astype(np.float32), y[order].astype(np.int64)


def partition(pid: int, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Partition `pid` of `num`: every num-th sample, so 10,000 partitions still get one."""
    x, y = _digits()
    idx = np.arange(pid % len(y), len(y), num)
    return torch.from_numpy(x[idx]), torch.from_numpy(y[idx])


def mark_first_training() -> None:
    """Record when training first starts in this process (time to first training)."""
    if MARK_DIR:
        path = os.path.join(MARK_DIR, f"fit-{os.getpid()}")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(repr(time.time()))


def fit(
    arrays: list[npt.NDArray[Any]], pid: int, num: int, server_round: int
) -> tuple[list[npt.NDArray[Any]], int, dict[str, float]]:
    mark_first_training()
    x, y = partition(pid, num)
    if MODE == "echo":
        return arrays, len(y), {}
    model = make_model()
    params = arrays[:-1] if EXTRA_MIB else arrays
    model.load_state_dict(
        {k: torch.from_numpy(np.array(a)) for k, a in zip(model.state_dict(), params, strict=True)}
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(SEED + 1000 * server_round + pid)
    order = torch.randperm(len(y), generator=generator)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for start in range(0, len(y), BATCH_SIZE):
        batch = order[start : start + BATCH_SIZE]
        optimizer.zero_grad()
        loss = loss_fn(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    out = [p.detach().numpy().copy() for p in model.state_dict().values()]
    if EXTRA_MIB:
        out.append(arrays[-1] + np.float32(pid + 1) if EXTRA_CHANGES else arrays[-1])
    return out, len(y), {}


def evaluate(arrays: list[npt.NDArray[Any]], pid: int, num: int) -> tuple[float, int, float]:
    x, y = partition(pid, num)
    if MODE == "echo":
        return 0.0, len(y), 0.0
    model = make_model()
    params = arrays[:-1] if EXTRA_MIB else arrays
    model.load_state_dict(
        {k: torch.from_numpy(np.array(a)) for k, a in zip(model.state_dict(), params, strict=True)}
    )
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = float(nn.functional.cross_entropy(logits, y))
        accuracy = float((logits.argmax(1) == y).float().mean())
    return loss, len(y), accuracy
