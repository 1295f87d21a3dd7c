"""The worker pool that a simulation's `BackendConfig` describes.

Kept apart from `config` so that parsing settings does not import the pool (numpy,
shared memory): the CLI imports this only once it starts the workers.
"""

from __future__ import annotations

from pathlib import Path

from stamen.workers import WorkerPool
from stamen.workers.warm import import_lazy_modules

from .config import BackendConfig

__all__ = ["prefork_warm", "worker_pool"]


def worker_pool(client_app_ref: str, directory: Path | None, backend: BackendConfig) -> WorkerPool:
    """A pool of workers that run `client_app_ref`, shaped as `backend` says (not started)."""
    resources = backend.client_resources
    return WorkerPool(
        client_app_ref,
        directory,
        num_workers=backend.num_workers,
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
    )


def prefork_warm(pool: WorkerPool) -> bool:
    """`pool.prefork()`, with what the app's libraries import on first use (`warm`:
    torch._dynamo, at the first optimizer step) imported first where it will fork: paid
    once here and shared, instead of by each worker in round 1 and held by each."""
    if pool.fork_blocker() is None:
        import_lazy_modules()
    return pool.prefork()
