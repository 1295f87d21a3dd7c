"""What every service and every user app shares: records, messages, context, errors."""

from .context import Context
from .errors import StamenError
from .legacy import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    NDArrays,
    Parameters,
    Scalar,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from .message import DEFAULT_TTL, Error, ErrorCode, Message, MessageType, Metadata
from .records import (
    Array,
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    RecordDict,
    UserConfig,
)

__all__ = [
    "DEFAULT_TTL",
    "Array",
    "ArrayRecord",
    "Code",
    "ConfigRecord",
    "Context",
    "Error",
    "ErrorCode",
    "EvaluateIns",
    "EvaluateRes",
    "FitIns",
    "FitRes",
    "GetParametersIns",
    "GetParametersRes",
    "GetPropertiesIns",
    "GetPropertiesRes",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "NDArrays",
    "Parameters",
    "RecordDict",
    "Scalar",
    "StamenError",
    "Status",
    "UserConfig",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
]
