"""The Message-API examples (app-numpy, app-pytorch) run in an in-process simulation.

Each runs 3 virtual SuperNodes for 2 rounds of `FedAvg().start(...)` with a real worker
pool; the final model the ServerApp saves must classify the digits far better than the
seeded initial model does (a broken aggregation or a lost update does not get there).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stamen.simulation import run_simulation

pytest.importorskip("sklearn")
pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _isolated_imports() -> Iterator[None]:
    """Forget the examples' modules (and sys.path entries) afterwards."""
    path = list(sys.path)
    yield
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file is not None and Path(file).resolve().is_relative_to(EXAMPLES):
            del sys.modules[name]
    sys.path[:] = path


def simulate(example: str, package: str, saved: Path) -> None:
    run_simulation(
        f"{package}.server_app:app",
        f"{package}.client_app:app",
        3,
        backend_config={"num_workers": 1},
        run_config={"num-server-rounds": 2, "save-to": str(saved), "seed": 3},
        directory=EXAMPLES / example,
    )


def test_app_numpy(tmp_path: Path) -> None:
    saved = tmp_path / "final.npz"
    simulate("app-numpy", "app_numpy", saved)
    from app_numpy import task

    with np.load(saved) as arrays:
        final: dict[str, Any] = {key: arrays[key] for key in arrays.files}
    assert sorted(final) == ["bias", "weight"]
    x, y, _, _ = task.load_data(0, 1)
    _, initial_accuracy = task.evaluate(task.initial_model(3), x, y)
    _, accuracy = task.evaluate(final, x, y)
    assert initial_accuracy < 0.3
    assert accuracy > 0.8


def test_app_pytorch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    saved = tmp_path / "final.pt"
    simulate("app-pytorch", "app_pytorch", saved)
    from app_pytorch import task

    final = task.Net()
    final.load_state_dict(torch.load(saved))
    _, loader = task.load_data(0, 1)
    _, initial_accuracy = task.test(task.initial_net(3), loader)
    _, accuracy = task.test(final, loader)
    assert initial_accuracy < 0.3
    assert accuracy > 0.7
