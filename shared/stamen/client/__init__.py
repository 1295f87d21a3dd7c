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

from .client import Client
from .client_app import ClientApp, ClientAppCallable, ClientFn, LegacyClientFn, Mod
from .numpy_client import NumPyClient

__all__ = [
    "Client",
    "ClientApp",
    "ClientAppCallable",
    "ClientFn",
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
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
]
