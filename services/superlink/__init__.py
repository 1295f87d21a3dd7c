"""stamen.superlink: the hub that knows the nodes, the runs and the messages in flight.

`SuperLink` holds the logic (state, object store, the Fleet / ServerAppIo / Control
handlers, liveness); transports serve its handlers. `open_superlink(":memory:" | path)`
builds one over memory or SQLite state; `observed_link` serves its metrics and dashboard.
These names are the package's public API: other services import only them.
"""

from .control import ControlHandler
from .fleet import FleetHandler
from .linkstate import LinkState, ObjectRef, StoredMessage
from .memorystate import MemoryLinkState
from .objectstore import FileObjectStore, MemoryObjectStore, ObjectStore
from .serverappio import ServerAppIoHandler
from .sqlitestate import SqliteLinkState
from .superlink import SuperLink, open_superlink
from .web import observed_link

__all__ = [
    "ControlHandler",
    "FileObjectStore",
    "FleetHandler",
    "LinkState",
    "MemoryLinkState",
    "MemoryObjectStore",
    "ObjectRef",
    "ObjectStore",
    "ServerAppIoHandler",
    "SqliteLinkState",
    "StoredMessage",
    "SuperLink",
    "observed_link",
    "open_superlink",
]
