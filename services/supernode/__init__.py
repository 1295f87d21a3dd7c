"""stamen.supernode: the agent on each data-holding machine.

`SuperNodeAgent` registers with the SuperLink, long-polls for the messages addressed to
it (heartbeating while it works on one), runs the ClientApp on them through an
`AppExecutor` and pushes the replies; the same class drives the virtual nodes of a
simulation. The executors here run the app in a warm worker process
(`WorkerProcessExecutor`) or a thread (`ThreadExecutor`); `stamen.supernode.cli` is the
`stamen-supernode` command.
"""

from stamen.codec.cache import ObjectCache
from stamen.common.backoff import Backoff, Outage

from .agent import SuperNodeAgent
from .executor import ThreadExecutor, WorkerProcessExecutor

__all__ = [
    "Backoff",
    "ObjectCache",
    "Outage",
    "SuperNodeAgent",
    "ThreadExecutor",
    "WorkerProcessExecutor",
]
