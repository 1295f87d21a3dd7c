"""Logistic regression on scikit-learn's digits, in plain numpy.

The model is a weight matrix (64 pixels x 10 classes) and a bias vector. Everything random
is seeded from (run seed, partition id, round), so a run gives bit-identical results in
simulation and in deployment.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_digits

NUM_FEATURES = 64
NUM_CLASSES = 10
DATA_SEED = 42
"""Fixes the permutation that splits the digits into partitions (the same on every node)."""
BATCH_SIZE = 32

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@lru_cache(maxsize=1)
def _digits() -> tuple[FloatArray, IntArray]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    return (x[order] / 16.0).astype(np.float64), y[order].astype(np.int64)


def load_data(
    partition_id: int, num_partitions: int
) -> tuple[FloatArray, IntArray, FloatArray, IntArray]:
    """This partition's (x_train, y_train, x_test, y_test): a contiguous shard, split 80/20."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is not in [0, {num_partitions})")
    x, y = _digits()
    shard = np.array_split(np.arange(len(y)), num_partitions)[partition_id]
    cut = int(len(shard) * 0.8)
    train_idx, test_idx = shard[:cut], shard[cut:]
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def initial_model(seed: int) -> dict[str, FloatArray]:
    """The global model before round 1: small random weights, zero bias."""
    rng = np.random.default_rng(seed)
    return {
        "weight": rng.normal(0.0, 0.01, (NUM_FEATURES, NUM_CLASSES)),
        "bias": np.zeros(NUM_CLASSES),
    }


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: FloatArray = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities


def train(
    model: dict[str, FloatArray],
    x: FloatArray,
    y: IntArray,
    *,
    epochs: int,
    lr: float,
    rng: np.random.Generator,
) -> tuple[dict[str, FloatArray], float]:
    """Mini-batch gradient descent on the cross-entropy; the new model and the mean loss."""
    w = model["weight"].astype(np.float64, copy=True)
    b = model["bias"].astype(np.float64, copy=True)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            probabilities = _softmax(x[batch] @ w + b)
            losses.append(-np.log(probabilities[np.arange(len(batch)), y[batch]] + 1e-12).mean())
            probabilities[np.arange(len(batch)), y[batch]] -= 1.0
            grad = probabilities / len(batch)
            w -= lr * (x[batch].T @ grad)
            b -= lr * grad.sum(axis=0)
    return {"weight": w, "bias": b}, float(np.mean(losses))


def evaluate(model: dict[str, FloatArray], x: FloatArray, y: IntArray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on (x, y)."""
    probabilities = _softmax(x @ model["weight"] + model["bias"])
    loss = float(-np.log(probabilities[np.arange(len(y)), y] + 1e-12).mean())
    accuracy = float((probabilities.argmax(axis=1) == y).mean())
    return loss, accuracy


def rng_for(seed: int, partition_id: int, server_round: int) -> np.random.Generator:
    """The shuffling generator for one client in one round."""
    return np.random.default_rng([seed, partition_id, server_round])
