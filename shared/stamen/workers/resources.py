"""How many workers a pool runs, and which CPUs threads and GPUs each one gets.

A client asks for `num_cpus` and `num_gpus` (fractions allowed); a SuperNode's one worker
asks for no CPU share (`num_cpus=None`) and keeps the machine's default threading. The
plan is a pure function of those and of what the machine offers, so it is tested without
a GPU; only `usable_cpus()` and `visible_gpus()` look at the machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stamen.common.errors import ConfigError

__all__ = ["THREAD_VARIABLES", "WorkerSpec", "plan_workers", "usable_cpus", "visible_gpus"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables that size math libraries' thread pools."""

_EPSILON = 1e-9  # so that 1 / 0.1 counts as 10 clients per GPU, not 9


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One worker's share: `threads` for its math libraries, the GPUs it may see."""

    index: int
    threads: int | None
    """None: the math libraries keep their default thread pools (one thread per CPU)."""
    cuda_visible_devices: str | None = None
    """The value for CUDA_VISIBLE_DEVICES, or None to leave the environment as it is."""


def plan_workers(
    *,
    num_workers: int | None,
    num_cpus: float | None,
    num_gpus: float,
    cpus: int,
    gpus: Sequence[str],
) -> list[WorkerSpec]:
    """The workers to start: at most `num_workers` (default: one per CPU), no more than
    the CPUs and GPUs allow for clients of `num_cpus` CPUs and `num_gpus` GPUs each.
    `num_cpus=None`: the workers get no CPU share, and their threads are left alone.

    Every worker gets the same thread count, so that a task's floating-point results do
    not depend on which worker ran it. GPUs are dealt round-robin, so that
    `floor(1 / num_gpus)` workers share one GPU at most.
    """
    if num_workers is not None and num_workers < 1:
        raise ConfigError(f"num_workers must be at least 1, got {num_workers}")
    if num_cpus is not None and not num_cpus > 0:
        raise ConfigError(f"num_cpus must be positive, got {num_cpus}")
    if not num_gpus >= 0:
        raise ConfigError(f"num_gpus must be zero or positive, got {num_gpus}")
    count = num_workers or cpus
    threads: int | None = None
    if num_cpus is not None:
        count = min(count, max(1, math.floor(cpus / num_cpus + _EPSILON)))
        threads = max(1, int(num_cpus))
    if num_gpus == 0:
        return [WorkerSpec(index=i, threads=threads) for i in range(count)]
    if not gpus:
        raise ConfigError(
            f"num_gpus is {num_gpus} but no GPU is visible (CUDA_VISIBLE_DEVICES is empty "
            "or no NVIDIA driver is loaded): set num_gpus to 0 to run on CPUs"
        )
    if num_gpus <= 1:
        per_gpu = math.floor(1 / num_gpus + _EPSILON)
        count = min(count, per_gpu * len(gpus))
        return [
            WorkerSpec(index=i, threads=threads, cuda_visible_devices=gpus[i % len(gpus)])
            for i in range(count)
        ]
    if num_gpus != int(num_gpus):
        raise ConfigError(f"num_gpus above 1 must be a whole number, got {num_gpus}")
    size = int(num_gpus)
    count = min(count, len(gpus) // size)
    if count == 0:
        raise ConfigError(f"a client needs {size} GPUs but only {len(gpus)} are visible")
    return [
        WorkerSpec(
            index=i,
            threads=threads,
            cuda_visible_devices=",".join(gpus[i * size : (i + 1) * size]),
        )
        for i in range(count)
    ]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPU ids a worker may be given, without importing torch (which takes seconds).

    CUDA_VISIBLE_DEVICES when set (its ids are what child processes can address);
    else the GPUs the NVIDIA driver lists.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    driver = Path("/proc/driver/nvidia/gpus")
    if driver.is_dir():
        return [str(i) for i in range(len(list(driver.iterdir())))]
    return []
