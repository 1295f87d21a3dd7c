"""A small PyTorch MLP on scikit-learn's digits (8x8 images: 64 features, 10 classes).

Everything random is seeded: the partitioning by a fixed permutation, the initial model by
the run seed, each client's shuffling by (run seed, partition id, round). And torch runs on
one thread: its sums come out in another order with another thread count, so a node with
more cores would otherwise drift from a simulated one by ~1e-6 (a model this small trains
no faster on more threads). So a run gives bit-identical results in simulation and in
deployment.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.set_num_threads(1)

DATA_SEED = 42
"""Fixes the permutation that splits the digits into partitions (the same on every node)."""
BATCH_SIZE = 32


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def initial_net(seed: int) -> Net:
    """The global model before round 1, the same for a seed without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Net()


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    return (
        torch.tensor(x[order] / 16.0, dtype=torch.float32),
        torch.tensor(y[order], dtype=torch.int64),
    )


def load_data(partition_id: int, num_partitions: int) -> tuple[DataLoader, DataLoader]:
    """This partition's (train, test) loaders: a contiguous shard, split 80/20.

    The train loader shuffles with its own generator; `train` reseeds it every round.
    """
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is not in [0, {num_partitions})")
    x, y = _digits()
    shard = np.array_split(np.arange(len(y)), num_partitions)[partition_id]
    cut = int(len(shard) * 0.8)
    train_idx = torch.from_numpy(shard[:cut])
    test_idx = torch.from_numpy(shard[cut:])
    trainloader = DataLoader(
        TensorDataset(x[train_idx], y[train_idx]),
        batch_size=BATCH_SIZE,
        shuffle=True,
        generator=torch.Generator(),
    )
    testloader = DataLoader(TensorDataset(x[test_idx], y[test_idx]), batch_size=BATCH_SIZE)
    return trainloader, testloader


def shuffle_seed(seed: int, partition_id: int, server_round: int) -> int:
    """A well-mixed 64-bit seed for one client's shuffling in one round."""
    return int(np.random.SeedSequence([seed, partition_id, server_round]).generate_state(1)[0])


def train(net: Net, trainloader: DataLoader, *, epochs: int, lr: float, seed: int) -> float:
    """Train in place with Adam; returns the mean training loss."""
    if trainloader.generator is None:
        raise ValueError("the train loader needs its own generator (see load_data)")
    trainloader.generator.manual_seed(seed)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    total, batches = 0.0, 0
    for _ in range(epochs):
        for x, y in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
    return total / max(batches, 1)


def test(net: Net, testloader: DataLoader) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `net` on the loader's examples."""
    criterion = nn.CrossEntropyLoss(reduction="sum")
    net.eval()
    loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in testloader:
            logits = net(x)
            loss += criterion(logits, y).item()
            correct += int((logits.argmax(dim=1) == y).sum().item())
            count += len(y)
    return loss / max(count, 1), correct / max(count, 1)


def get_weights(net: Net) -> list[npt.NDArray[Any]]:
    return [value.cpu().numpy() for value in net.state_dict().values()]


def set_weights(net: Net, parameters: list[npt.NDArray[Any]]) -> None:
    state = OrderedDict(
        (key, torch.tensor(np.asarray(value)))
        for key, value in zip(net.state_dict().keys(), parameters, strict=True)
    )
    net.load_state_dict(state, strict=True)


def num_examples(loader: DataLoader) -> int:
    """How many examples `loader` holds (its dataset is a TensorDataset: it has a length)."""
    dataset = loader.dataset
    assert isinstance(dataset, TensorDataset)
    return len(dataset)
