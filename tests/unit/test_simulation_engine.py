"""The simulation engine end to end, in-process: a SuperLink, virtual SuperNodes over the
memory transport, a real worker pool, and the ServerApp runner, with a numpy-only app
written to a temporary directory (it imports in a fraction of a second).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psutil
import pytest
from stamen.client import ClientApp
from stamen.common.errors import AppLoadError, ConfigError, UserInputError
from stamen.common.loading import load_app
from stamen.server import ServerApp
from stamen.server.history import History
from stamen.simulation import run_simulation, run_simulation_async
from stamen.simulation.apps import client_app_ref, server_app_of
from stamen.simulation.config import BackendConfig, parse_backend_config
from stamen.simulation.engine import _garbage_frozen, open_simulation
from stamen.workers.pool import WorkerPool

pytestmark = pytest.mark.timeout(90)

CLIENT = """
import os
import signal

import numpy as np
from stamen.client import ClientApp, NumPyClient
from stamen.common.records import MetricRecord


class Client(NumPyClient):
    def __init__(self, context):
        self.partition = int(context.node_config["partition-id"])
        self.partitions = int(context.node_config["num-partitions"])

    def fit(self, parameters, config):
        if self.partition == int(config.get("fail-partition", -1)):
            raise RuntimeError("partition %d fails on purpose" % self.partition)
        if self.partition == int(config.get("kill-partition", -1)) and config["server-round"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-task
        calls = self.context.state.get("calls", MetricRecord({"n": 0}))["n"] + 1
        self.context.state["calls"] = MetricRecord({"n": calls})
        rng = np.random.default_rng([self.partition, int(config["server-round"])])
        updated = [p + rng.standard_normal(p.shape) / 3.0 for p in parameters]
        metrics = {"calls": calls, "partition": self.partition, "partitions": self.partitions}
        return updated, 1 + self.partition, metrics

    def evaluate(self, parameters, config):
        return float(np.abs(parameters[0]).mean()), 10, {"partition": self.partition}


app = ClientApp(client_fn=lambda context: Client(context).to_client())
"""

LEGACY_CLIENT = """
from stamen.client import ClientApp, NumPyClient


class Client(NumPyClient):
    def __init__(self, cid):
        self.cid = cid

    def fit(self, parameters, config):
        return parameters, 1, {"calls": 1, "partition": int(self.cid), "partitions": 0}

    def evaluate(self, parameters, config):
        return 0.0, 1, {}


def client_fn(cid: str):
    return Client(cid).to_client()


app = ClientApp(client_fn=client_fn)
"""

SERVER = """
import numpy as np
from stamen.common import ndarrays_to_parameters, parameters_to_ndarrays
from stamen.server import ServerApp, ServerAppComponents, ServerConfig
from stamen.server.strategy import FedAvg

FINAL = []
FAILURES = []


class Recording(FedAvg):
    def aggregate_fit(self, server_round, results, failures):
        FAILURES.append(len(failures))
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        FINAL[:] = parameters_to_ndarrays(parameters)
        return parameters, metrics


def fit_metrics(metrics):
    calls = [m["calls"] for _, m in metrics]
    return {
        "min-calls": min(calls),
        "max-calls": max(calls),
        "nodes": len(metrics),
        "partition-sum": sum(m["partition"] for _, m in metrics),
        "partitions": max(m["partitions"] for _, m in metrics),
    }


def server_fn(context):
    config = context.run_config
    strategy = Recording(
        fraction_fit=float(config.get("fraction-fit", 1.0)),
        fraction_evaluate=float(config.get("fraction-evaluate", 1.0)),
        min_fit_clients=1,
        min_evaluate_clients=1,
        min_available_clients=1,
        on_fit_config_fn=lambda r: {
            "server-round": r,
            "fail-partition": int(config.get("fail-partition", -1)),
            "kill-partition": int(config.get("kill-partition", -1)),
        },
        fit_metrics_aggregation_fn=fit_metrics,
        initial_parameters=ndarrays_to_parameters([np.zeros((8, 4)), np.zeros(4)]),
    )
    rounds = int(config.get("num-server-rounds", 2))
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))


app = ServerApp(server_fn=server_fn)
"""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("simulation_engine_app")
    (directory / "engine_client.py").write_text(textwrap.dedent(CLIENT))
    (directory / "engine_server.py").write_text(textwrap.dedent(SERVER))
    (directory / "engine_legacy.py").write_text(textwrap.dedent(LEGACY_CLIENT))
    return directory


@pytest.fixture
def server_module(app_dir: Path) -> ModuleType:
    """The server module, imported from `app_dir`, its records emptied for the test."""
    load_app("engine_server:app", ServerApp, app_dir)
    module = sys.modules["engine_server"]
    module.FINAL.clear()
    module.FAILURES.clear()
    return module


def simulate(app_dir: Path, nodes: int = 10, **kwargs: Any) -> History:
    backend = kwargs.pop("backend_config", {"num_workers": 2})
    return run_simulation(
        "engine_server:app",
        "engine_client:app",
        nodes,
        backend_config=backend,
        directory=app_dir,
        **kwargs,
    )


def test_references_run_every_node_each_round(app_dir: Path, server_module: ModuleType) -> None:
    history = simulate(app_dir, run_config={"num-server-rounds": 2})

    assert [r for r, _ in history.losses_distributed] == [1, 2]
    assert history.metrics_distributed_fit["nodes"] == [(1, 10), (2, 10)]
    # node_config: partition-id 0..9 (they sum to 45) and num-partitions 10
    assert history.metrics_distributed_fit["partition-sum"] == [(1, 45), (2, 45)]
    assert history.metrics_distributed_fit["partitions"] == [(1, 10), (2, 10)]
    assert [r for r, _ in history.round_times] == [1, 2]
    assert server_module.FAILURES == [0, 0]


def test_objects_give_the_same_model_as_references(
    app_dir: Path, server_module: ModuleType
) -> None:
    simulate(app_dir, nodes=4, seed=5)
    by_reference = [a.copy() for a in server_module.FINAL]
    client = load_app("engine_client:app", ClientApp, app_dir)
    server = load_app("engine_server:app", ServerApp, app_dir)

    history = run_simulation(server, client, 4, backend_config={"num_workers": 2}, seed=5)

    assert len(history.losses_distributed) == 2
    assert all(np.array_equal(a, b) for a, b in zip(by_reference, server_module.FINAL, strict=True))
    assert history.final_arrays is not None  # the final model comes back with the History
    final = history.final_arrays.to_numpy_ndarrays()
    assert all(np.array_equal(a, b) for a, b in zip(final, server_module.FINAL, strict=True))


def test_a_legacy_client_fn_gets_cids_0_to_n_minus_1(
    app_dir: Path, server_module: ModuleType
) -> None:
    history = run_simulation(
        "engine_server:app",
        "engine_legacy:app",
        5,
        backend_config={"num_workers": 1},
        run_config={"num-server-rounds": 1},
        directory=app_dir,
    )

    assert history.metrics_distributed_fit["partition-sum"] == [(1, 0 + 1 + 2 + 3 + 4)]


def test_context_state_persists_per_node_across_rounds(
    app_dir: Path, server_module: ModuleType
) -> None:
    history = simulate(app_dir, nodes=6, run_config={"num-server-rounds": 3})

    # Every node trained in every round, so each one counted 1, 2, 3 calls in its state.
    assert history.metrics_distributed_fit["min-calls"] == [(1, 1), (2, 2), (3, 3)]
    assert history.metrics_distributed_fit["max-calls"] == [(1, 1), (2, 2), (3, 3)]


def test_a_raising_client_fails_its_round_and_the_run_goes_on(
    app_dir: Path, server_module: ModuleType
) -> None:
    history = simulate(app_dir, nodes=5, run_config={"fail-partition": 3})

    assert server_module.FAILURES == [1, 1]
    assert history.metrics_distributed_fit["nodes"] == [(1, 4), (2, 4)]
    assert [r for r, _ in history.losses_distributed] == [1, 2]


def test_a_worker_that_dies_fails_its_task_and_is_replaced(
    app_dir: Path, server_module: ModuleType
) -> None:
    history = simulate(app_dir, nodes=4, run_config={"kill-partition": 1})

    assert server_module.FAILURES == [1, 0]  # round 2 runs on the replacement worker
    assert history.metrics_distributed_fit["nodes"] == [(1, 3), (2, 4)]


def test_the_same_seed_gives_the_same_model_with_one_or_two_workers(
    app_dir: Path, server_module: ModuleType
) -> None:
    config = {"num-server-rounds": 3, "fraction-fit": 0.5}
    finals = []
    for workers in (1, 2):
        simulate(
            app_dir, nodes=8, backend_config={"num_workers": workers}, run_config=config, seed=11
        )
        finals.append([a.copy() for a in server_module.FINAL])
    simulate(app_dir, nodes=8, run_config=config, seed=12)
    other_seed = server_module.FINAL

    assert all(a.tobytes() == b.tobytes() for a, b in zip(*finals, strict=True))
    assert any(a.tobytes() != b.tobytes() for a, b in zip(finals[0], other_seed, strict=True))


def test_workers_are_forked_from_here_only_once_the_client_app_is_imported_here(
    app_dir: Path, server_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Forking before this process imported the app would make every worker import it.
    forks: list[str] = []
    prefork = WorkerPool.prefork

    def recording(pool: WorkerPool) -> bool:
        forks.append(pool.app_ref)
        return prefork(pool)

    monkeypatch.setattr(WorkerPool, "prefork", recording)
    (app_dir / "engine_fresh_client.py").write_text(textwrap.dedent(CLIENT))
    reference = "engine_fresh_client:app"
    config = {"num-server-rounds": 1}

    run_simulation("engine_server:app", reference, 2, run_config=config, directory=app_dir)
    assert forks == []
    load_app(reference, ClientApp, app_dir)
    history = run_simulation(
        "engine_server:app", reference, 2, run_config=config, directory=app_dir
    )

    assert forks == [reference]
    assert history.metrics_distributed_fit["nodes"] == [(1, 2)]


def test_what_exists_when_a_simulation_starts_is_left_out_of_collections_until_it_ends() -> None:
    assert gc.get_freeze_count() == 0
    with _garbage_frozen():
        assert gc.get_freeze_count() > 0  # torch's objects, in a real app: not walked again
    assert gc.get_freeze_count() == 0

    gc.freeze()  # the caller's own choice stands
    frozen = gc.get_freeze_count()
    try:
        with _garbage_frozen():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


@pytest.mark.slow
async def test_ten_thousand_idle_nodes_cost_little_memory(
    app_dir: Path, server_module: ModuleType
) -> None:
    client = client_app_ref("engine_client:app", app_dir)
    server, reference = server_app_of("engine_server:app", app_dir)
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss

    async with open_simulation(client, 10_000, BackendConfig(num_workers=2)) as simulation:
        gc.collect()
        grown = process.memory_info().rss - before
        assert simulation.nodes.started == 0  # no agent before its node is sampled
        config = {"num-server-rounds": 1, "fraction-fit": 0.01, "fraction-evaluate": 0.01}
        history = await simulation.run(server, server_app_ref=reference, run_config=config)
        assert 100 <= simulation.nodes.started <= 200  # those sampled for fit or evaluate

    assert grown < 100 * 2**20, f"10,000 registered nodes took {grown / 2**20:.0f} MiB"
    assert history.metrics_distributed_fit["nodes"] == [(1, 100)]
    assert server_module.FAILURES == [0]


async def test_the_async_variant_runs_in_the_callers_loop(
    app_dir: Path, server_module: ModuleType
) -> None:
    history = await run_simulation_async(
        "engine_server:app",
        "engine_client:app",
        3,
        '{"num_workers": 1}',
        {"num-server-rounds": 1},
        directory=app_dir,
    )

    assert history.metrics_distributed_fit["nodes"] == [(1, 3)]


async def test_from_inside_a_running_loop_it_runs_in_a_thread(
    app_dir: Path, server_module: ModuleType
) -> None:
    asyncio.get_running_loop()  # a notebook's situation: the blocking call still works
    history = simulate(app_dir, nodes=2, run_config={"num-server-rounds": 1})

    assert history.metrics_distributed_fit["nodes"] == [(1, 2)]


def test_a_module_that_cannot_be_found_fails_before_any_worker_starts(app_dir: Path) -> None:
    with pytest.raises(AppLoadError, match="no module named 'missing'"):
        run_simulation("missing:app", "engine_client:app", 2, directory=app_dir)
    with pytest.raises(AppLoadError, match="expected 'module:attribute'"):
        run_simulation("engine_server:app", "engine_client", 2, directory=app_dir)


def test_a_client_app_that_does_not_load_in_the_workers_ends_the_run(app_dir: Path) -> None:
    with pytest.raises(AppLoadError, match="has no attribute 'nothing'"):
        run_simulation("engine_server:app", "engine_client:nothing", 2, directory=app_dir)


def test_an_app_object_that_no_module_holds_is_refused(app_dir: Path) -> None:
    server = load_app("engine_server:app", ServerApp, app_dir)
    local = ClientApp(client_fn=lambda context: None)  # type: ignore[arg-type,return-value]

    with pytest.raises(UserInputError, match="define it at module level"):
        run_simulation(server, local, 2)


def test_an_object_is_found_by_the_module_that_holds_it(app_dir: Path) -> None:
    client = load_app("engine_client:app", ClientApp, app_dir)
    found = client_app_ref(client, None)

    assert found.reference == "engine_client:app"
    assert found.directory == app_dir.resolve()
    module = importlib.import_module("engine_client")
    assert module.app is client


def test_zero_supernodes_is_a_config_error(app_dir: Path) -> None:
    with pytest.raises(ConfigError, match="num_supernodes must be at least 1"):
        simulate(app_dir, nodes=0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"num_workers": 0}', "num_workers: Input should be greater than or equal to 1"),
        ({"client_resources": {"num_cpus": -1}}, "client_resources.num_cpus: Input should be"),
        ({"client_resources": {"gpus": 1}}, "client_resources.gpus: unknown key"),
        ('{"num_workers": 2', "backend config is not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ("no-such-file.json", "is neither JSON nor a readable file"),
    ],
)
def test_a_bad_backend_config_is_one_line(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError, match="backend config") as caught:
        parse_backend_config(raw)

    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_backend_config_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "backend.json"
    path.write_text('{"num_workers": 3, "client_resources": {"num_cpus": 0.5, "num_gpus": 0.25}}')

    config = parse_backend_config(str(path))

    assert config.num_workers == 3
    assert config.client_resources.num_cpus == 0.5
    assert config.client_resources.num_gpus == 0.25
    assert parse_backend_config(None) == BackendConfig()
