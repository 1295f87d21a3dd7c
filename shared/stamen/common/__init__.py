"""What every service and every user app shares: records, messages, context, errors.

The names below load on first use, so that importing one module of the package (say
`stamen.common.errors`, as every CLI does first) does not import them all, numpy included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_attributes

if TYPE_CHECKING:
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

_HOMES = {
    "Context": ".context",
    "StamenError": ".errors",
    "Code": ".legacy",
    "EvaluateIns": ".legacy",
    "EvaluateRes": ".legacy",
    "FitIns": ".legacy",
    "FitRes": ".legacy",
    "GetParametersIns": ".legacy",
    "GetParametersRes": ".legacy",
    "GetPropertiesIns": ".legacy",
    "GetPropertiesRes": ".legacy",
    "NDArrays": ".legacy",
    "Parameters": ".legacy",
    "Scalar": ".legacy",
    "Status": ".legacy",
    "ndarrays_to_parameters": ".legacy",
    "parameters_to_ndarrays": ".legacy",
    "DEFAULT_TTL": ".message",
    "Error": ".message",
    "ErrorCode": ".message",
    "Message": ".message",
    "MessageType": ".message",
    "Metadata": ".message",
    "Array": ".records",
    "ArrayRecord": ".records",
    "ConfigRecord": ".records",
    "MetricRecord": ".records",
    "RecordDict": ".records",
    "UserConfig": ".records",
}

__getattr__ = lazy_attributes(__name__, _HOMES)
