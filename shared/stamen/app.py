"""The names an app module needs most, in one import: `from stamen.app import Message, ...`."""

from stamen.common.context import Context
from stamen.common.message import Error, ErrorCode, Message, MessageType
from stamen.common.records import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

__all__ = [
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "Context",
    "Error",
    "ErrorCode",
    "Message",
    "MessageType",
    "MetricRecord",
    "RecordDict",
]
