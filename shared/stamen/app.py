"""The names an app module needs most, in one import: `from stamen.app import Message, ...`.

Mirrors `flwr.app`; each name's home is in `stamen.common`.
"""

from stamen.common.context import Context
from stamen.common.message import DEFAULT_TTL, Error, ErrorCode, Message, MessageType, Metadata
from stamen.common.records import (
    Array,
    ArrayRecord,
    ConfigRecord,
    ConfigScalar,
    ConfigScalarList,
    MetricRecord,
    MetricScalar,
    MetricScalarList,
    RecordDict,
    UserConfig,
    UserConfigValue,
)
from stamen.common.records import ConfigValue as ConfigRecordValues
from stamen.common.records import MetricValue as MetricRecordValues
from stamen.compat.unsupported import unsupported_attributes

__all__ = [
    "DEFAULT_TTL",
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "ConfigRecordValues",
    "ConfigScalar",
    "ConfigScalarList",
    "Context",
    "Error",
    "ErrorCode",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "MetricRecordValues",
    "MetricScalar",
    "MetricScalarList",
    "RecordDict",
    "UserConfig",
    "UserConfigValue",
]

__getattr__ = unsupported_attributes(__name__)
