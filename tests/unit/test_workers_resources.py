"""plan_workers: how many workers a pool starts, with which threads and GPUs."""

from __future__ import annotations

from collections import Counter

import pytest
from stamen.common.errors import ConfigError
from stamen.workers.launcher import default_start_method
from stamen.workers.resources import WorkerSpec, plan_workers, visible_gpus


def plan(
    *,
    num_workers: int | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    cpus: int = 8,
    gpus: tuple[str, ...] = (),
) -> list[WorkerSpec]:
    return plan_workers(
        num_workers=num_workers, num_cpus=num_cpus, num_gpus=num_gpus, cpus=cpus, gpus=gpus
    )


def test_one_single_threaded_worker_per_cpu_by_default() -> None:
    specs = plan(cpus=8)
    assert [s.index for s in specs] == list(range(8))
    assert {s.threads for s in specs} == {1}
    assert {s.cuda_visible_devices for s in specs} == {None}


@pytest.mark.parametrize(
    ("num_workers", "num_cpus", "cpus", "expected_workers", "expected_threads"),
    [
        (None, 2.0, 8, 4, 2),  # clients of 2 CPUs: half as many workers, 2 threads each
        (None, 3.0, 8, 2, 3),
        (3, 1.0, 8, 3, 1),  # fewer workers than CPUs when asked
        (16, 1.0, 8, 8, 1),  # never more than the CPUs allow...
        (4, 0.5, 2, 4, 1),  # ...which fractional clients raise
        (None, 16.0, 8, 1, 16),  # a client larger than the machine still gets one worker
    ],
)
def test_cpus_per_client_bound_the_workers_and_set_their_threads(
    num_workers: int | None,
    num_cpus: float,
    cpus: int,
    expected_workers: int,
    expected_threads: int,
) -> None:
    specs = plan(num_workers=num_workers, num_cpus=num_cpus, cpus=cpus)
    assert len(specs) == expected_workers
    assert {s.threads for s in specs} == {expected_threads}


def test_fractional_gpus_share_each_gpu_among_at_most_floor_one_over_the_fraction() -> None:
    specs = plan(num_cpus=1.0, num_gpus=0.25, cpus=64, gpus=("0", "1"))
    assert len(specs) == 8  # 4 per GPU
    assert Counter(s.cuda_visible_devices for s in specs) == {"0": 4, "1": 4}
    specs = plan(num_gpus=0.1, cpus=64, gpus=("3",))
    assert len(specs) == 10  # 1 / 0.1 is 10 clients per GPU, floating point or not
    assert {s.cuda_visible_devices for s in specs} == {"3"}


def test_fewer_workers_than_gpu_slots_spread_over_the_gpus() -> None:
    specs = plan(num_workers=2, num_gpus=0.5, cpus=8, gpus=("0", "1"))
    assert [s.cuda_visible_devices for s in specs] == ["0", "1"]


def test_cpus_still_bound_workers_when_gpus_allow_more() -> None:
    assert len(plan(num_gpus=0.1, cpus=2, gpus=("0",))) == 2


def test_whole_gpus_per_client_give_each_worker_its_own_set() -> None:
    specs = plan(num_gpus=2, cpus=8, gpus=("0", "1", "2", "3", "4"))
    assert [s.cuda_visible_devices for s in specs] == ["0,1", "2,3"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_gpus": 0.5}, "no GPU is visible"),
        ({"num_gpus": 1.5, "gpus": ("0", "1")}, "whole number"),
        ({"num_gpus": 4, "gpus": ("0", "1")}, "needs 4 GPUs"),
        ({"num_cpus": 0}, "num_cpus must be positive"),
        ({"num_workers": 0}, "at least 1"),
        ({"num_gpus": -1}, "num_gpus"),
    ],
)
def test_impossible_requests_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan(**kwargs)  # type: ignore[arg-type]


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_gpu_clients_get_spawned_workers() -> None:
    # An app that touches CUDA at import leaves forked processes unable to use it.
    assert default_start_method(0.5) == "spawn"
    assert default_start_method(0.0) == "forkserver"
