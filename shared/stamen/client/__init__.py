"""The client SDK: what a node runs (`ClientApp`) and the client interfaces it builds on.

Mirrors `flwr.client`, so a Flower app ports by changing its imports. The worker-side
runner (`stamen.client.runtime`) is imported on its own: it needs the codec.
"""

from stamen.common.legacy import (
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
from stamen.compat.unsupported import unsupported_attributes

from . import mod
from .client import Client
from .client_app import ClientApp, ClientAppCallable, ClientFn, LegacyClientFn, Mod
from .numpy_client import NumPyClient
from .typing import ClientFnExt

__all__ = [
    "Client",
    "ClientApp",
    "ClientAppCallable",
    "ClientFn",
    "ClientFnExt",
    "Code",
    "EvaluateIns",
    "EvaluateRes",
    "FitIns",
    "FitRes",
    "GetParametersIns",
    "GetParametersRes",
    "GetPropertiesIns",
    "GetPropertiesRes",
    "LegacyClientFn",
    "Mod",
    "NDArrays",
    "NumPyClient",
    "Parameters",
    "Scalar",
    "Status",
    "mod",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
]

__getattr__ = unsupported_attributes(__name__)
