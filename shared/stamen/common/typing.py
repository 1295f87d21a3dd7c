"""The legacy API's types under Flower's module name (`flwr.common.typing`).

Their home is `stamen.common.legacy`; this module only re-exports them.
"""

from __future__ import annotations

from stamen.compat.unsupported import unsupported_attributes

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
)

__all__ = [
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
]

__getattr__ = unsupported_attributes(__name__)
