"""stamen.workers: processes that run a ClientApp, and the shared memory that reaches them.

A `WorkerPool` keeps worker processes that import the ClientApp once and run its tasks;
a simulation shares one among all its virtual SuperNodes, a SuperNode runs a pool of one.

    async with WorkerPool("client:app", directory, num_workers=4) as pool:
        await pool.started()
        result = await pool.execute(task)

The names below load on first use: every worker process imports this package for its
own modules and must not pay for the pool's side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stamen.common.lazy import lazy_attributes

if TYPE_CHECKING:
    from .pool import PoolClosedError, PoolExecutor, TransferCounts, WorkerPool

__all__ = ["PoolClosedError", "PoolExecutor", "TransferCounts", "WorkerPool"]

__getattr__ = lazy_attributes(__name__, dict.fromkeys(__all__, ".pool"))
