"""What every service and every user app shares: records, messages, context, errors.

The names below load on first use, so that importing one module of the package (say
`stamen.common.errors`, as every CLI does first) does not import them all, numpy included.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .lazy import lazy_attributes

if TYPE_CHECKING:
    from .context import Context
    from .errors import StamenError
    from .legacy import (
        Code,
        Config,
        EvaluateIns,
        EvaluateRes,
        FitIns,
        FitRes,
        GetParametersIns,
        GetParametersRes,
        GetPropertiesIns,
        GetPropertiesRes,
        MessageTypeLegacy,
        Metrics,
        MetricsAggregationFn,
        NDArray,
        NDArrayFloat,
        NDArrayInt,
        NDArrays,
        Parameters,
        Properties,
        Scalar,
        Status,
        Value,
        bytes_to_ndarray,
        ndarray_to_bytes,
        ndarrays_to_parameters,
        parameters_to_ndarrays,
    )
    from .logger import configure, log
    from .message import DEFAULT_TTL, Error, ErrorCode, Message, MessageType, Metadata
    from .records import (
        Array,
        ArrayRecord,
        ConfigRecord,
        ConfigsRecord,
        MetricRecord,
        MetricsRecord,
        ParametersRecord,
        RecordDict,
        RecordSet,
        UserConfig,
        array_from_numpy,
    )
    from .records import ConfigValue as ConfigRecordValues
    from .records import MetricValue as MetricRecordValues

_HOMES = {
    "config": "",
    "logger": "",
    "typing": "",
    "Context": ".context",
    "StamenError": ".errors",
    **dict.fromkeys(
        [
            "Code",
            "Config",
            "EvaluateIns",
            "EvaluateRes",
            "FitIns",
            "FitRes",
            "GetParametersIns",
            "GetParametersRes",
            "GetPropertiesIns",
            "GetPropertiesRes",
            "MessageTypeLegacy",
            "Metrics",
            "MetricsAggregationFn",
            "NDArray",
            "NDArrayFloat",
            "NDArrayInt",
            "NDArrays",
            "Parameters",
            "Properties",
            "Scalar",
            "Status",
            "Value",
            "bytes_to_ndarray",
            "ndarray_to_bytes",
            "ndarrays_to_parameters",
            "parameters_to_ndarrays",
        ],
        ".legacy",
    ),
    "configure": ".logger",
    "log": ".logger",
    **dict.fromkeys(
        ["DEFAULT_TTL", "Error", "ErrorCode", "Message", "MessageType", "Metadata"], ".message"
    ),
    **dict.fromkeys(
        [
            "Array",
            "ArrayRecord",
            "ConfigRecord",
            "ConfigsRecord",
            "MetricRecord",
            "MetricsRecord",
            "ParametersRecord",
            "RecordDict",
            "RecordSet",
            "UserConfig",
            "array_from_numpy",
        ],
        ".records",
    ),
}

__all__ = [
    "DEFAULT_TTL",
    "Array",
    "ArrayRecord",
    "Code",
    "Config",
    "ConfigRecord",
    "ConfigRecordValues",
    "ConfigsRecord",
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
    "MessageTypeLegacy",
    "Metadata",
    "MetricRecord",
    "MetricRecordValues",
    "Metrics",
    "MetricsAggregationFn",
    "MetricsRecord",
    "NDArray",
    "NDArrayFloat",
    "NDArrayInt",
    "NDArrays",
    "Parameters",
    "ParametersRecord",
    "Properties",
    "RecordDict",
    "RecordSet",
    "Scalar",
    "StamenError",
    "Status",
    "UserConfig",
    "Value",
    "array_from_numpy",
    "bytes_to_ndarray",
    "configure",
    "log",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
]


def __getattr__(name: str) -> Any:
    # Flower's names for two record value types; elsewhere a name loads from its home.
    if name in _RENAMED:
        return getattr(importlib.import_module(".records", __name__), _RENAMED[name])
    return _lazy(name)


_RENAMED = {"ConfigRecordValues": "ConfigValue", "MetricRecordValues": "MetricValue"}
_lazy = lazy_attributes(__name__, _HOMES)
