"""stamen.runner: runs a ServerApp against a SuperLink's ServerAppIo API.

`run_serverapp` is the runner both deployment (`stamen-serverapp`, over gRPC, wrapped in
`RetryingServerAppIo`) and simulation (over the memory transport) use; `ServerAppIoGrid`
is the Grid it hands the app.
"""

from .grid import ServerAppIoGrid
from .retry import RetryingServerAppIo
from .runner import run_serverapp

__all__ = ["RetryingServerAppIo", "ServerAppIoGrid", "run_serverapp"]
