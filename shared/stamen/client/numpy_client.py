"""NumPyClient: the client interface most Flower apps implement, in numpy arrays.

`to_client()` adapts it to `Client`. Methods the subclass does not override answer
"not implemented" (like `Client`'s defaults); what the overridden ones return is checked,
so a wrong tuple fails with a message that says what was expected, not deep in the codec.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from stamen.common.context import Context
from stamen.common.errors import ClientAppError
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
    Scalar,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

from .client import Client

__all__ = ["NumPyClient"]

_FIT_SHAPE = "a tuple (parameters: list of numpy arrays, num_examples: int, metrics: dict)"
_EVALUATE_SHAPE = "a tuple (loss: float, num_examples: int, metrics: dict)"


class NumPyClient:
    """Base class of clients that train on numpy arrays; override what you support."""

    _context: Context | None = None

    @property
    def context(self) -> Context:
        """The node's Context; the ClientApp sets it before calling any method."""
        if self._context is None:
            raise ClientAppError(f"{type(self).__name__} has no context yet")
        return self._context

    @context.setter
    def context(self, context: Context) -> None:
        self._context = context

    def get_context(self) -> Context:
        return self.context

    def set_context(self, context: Context) -> None:
        self.context = context

    def get_properties(self, config: dict[str, Scalar]) -> dict[str, Scalar]:
        return {}

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return []

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        return [], 0, {}

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        return 0.0, 0, {}

    def to_client(self) -> Client:
        """This client behind the `Client` interface."""
        return _NumPyClientAdapter(self)


class _NumPyClientAdapter(Client):
    """A `Client` that converts Parameters to numpy arrays and back."""

    def __init__(self, numpy_client: NumPyClient) -> None:
        self.numpy_client = numpy_client

    @property
    def context(self) -> Context:
        return self.numpy_client.context

    @context.setter
    def context(self, context: Context) -> None:
        self.numpy_client.context = context

    def _overrides(self, method: str) -> bool:
        return getattr(type(self.numpy_client), method) is not getattr(NumPyClient, method)

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        if not self._overrides("get_properties"):
            return super().get_properties(ins)
        properties = self.numpy_client.get_properties(ins.config)
        if not isinstance(properties, dict):
            raise ClientAppError(
                f"NumPyClient.get_properties must return a dict, got {_describe(properties)}"
            )
        return GetPropertiesRes(status=Status(Code.OK), properties=properties)

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        if not self._overrides("get_parameters"):
            return super().get_parameters(ins)
        ndarrays = self.numpy_client.get_parameters(ins.config)
        if not isinstance(ndarrays, list | tuple):
            raise ClientAppError(
                "NumPyClient.get_parameters must return a list of numpy arrays, "
                f"got {_describe(ndarrays)}"
            )
        return GetParametersRes(status=Status(Code.OK), parameters=ndarrays_to_parameters(ndarrays))

    def fit(self, ins: FitIns) -> FitRes:
        if not self._overrides("fit"):
            return super().fit(ins)
        result = self.numpy_client.fit(parameters_to_ndarrays(ins.parameters), ins.config)
        ndarrays, num_examples, metrics = _unpack("fit", result, _FIT_SHAPE)
        if not isinstance(ndarrays, list | tuple):
            raise _wrong_item("fit", 0, "parameters", "a list of numpy arrays", ndarrays)
        return FitRes(
            status=Status(Code.OK),
            parameters=ndarrays_to_parameters(ndarrays),
            num_examples=_num_examples("fit", num_examples),
            metrics=_metrics("fit", metrics),
        )

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        if not self._overrides("evaluate"):
            return super().evaluate(ins)
        result = self.numpy_client.evaluate(parameters_to_ndarrays(ins.parameters), ins.config)
        loss, num_examples, metrics = _unpack("evaluate", result, _EVALUATE_SHAPE)
        if isinstance(loss, bool) or not isinstance(loss, numbers.Real):
            raise _wrong_item("evaluate", 0, "loss", "a float", loss)
        return EvaluateRes(
            status=Status(Code.OK),
            loss=float(loss),
            num_examples=_num_examples("evaluate", num_examples),
            metrics=_metrics("evaluate", metrics),
        )


def _describe(value: object) -> str:
    if isinstance(value, tuple):
        kinds = ", ".join(type(v).__name__ for v in value)
        return f"a tuple of {len(value)} ({kinds})"
    return f"{type(value).__name__}"


def _unpack(method: str, result: object, shape: str) -> tuple[Any, Any, Any]:
    if not isinstance(result, tuple) or len(result) != 3:
        raise ClientAppError(f"NumPyClient.{method} must return {shape}, got {_describe(result)}")
    return result[0], result[1], result[2]


def _wrong_item(method: str, index: int, name: str, expected: str, value: object) -> ClientAppError:
    return ClientAppError(
        f"NumPyClient.{method} returned {type(value).__name__} as item {index} ({name}); "
        f"expected {expected}"
    )


def _num_examples(method: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _wrong_item(method, 1, "num_examples", "an int", value)
    return int(value)


def _metrics(method: str, value: object) -> dict[str, Scalar]:
    if not isinstance(value, dict):
        raise _wrong_item(method, 2, "metrics", "a dict", value)
    return value
