"""Client: the legacy, Parameters-based client interface that Flower apps implement.

A subclass overrides the methods it supports; the others answer with a Status whose
code says "not implemented", so a strategy can tell a missing feature from a failure.
"""

from __future__ import annotations

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
    Parameters,
    Status,
)

__all__ = ["Client"]


def _not_implemented(code: Code, method: str) -> Status:
    return Status(code=code, message=f"Client does not implement `{method}`")


class Client:
    """Base class of clients speaking Parameters (use `NumPyClient` for numpy arrays)."""

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

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        return GetPropertiesRes(
            status=_not_implemented(Code.GET_PROPERTIES_NOT_IMPLEMENTED, "get_properties"),
            properties={},
        )

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        return GetParametersRes(
            status=_not_implemented(Code.GET_PARAMETERS_NOT_IMPLEMENTED, "get_parameters"),
            parameters=Parameters(tensors=[], tensor_type=""),
        )

    def fit(self, ins: FitIns) -> FitRes:
        return FitRes(
            status=_not_implemented(Code.FIT_NOT_IMPLEMENTED, "fit"),
            parameters=Parameters(tensors=[], tensor_type=""),
            num_examples=0,
            metrics={},
        )

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        return EvaluateRes(
            status=_not_implemented(Code.EVALUATE_NOT_IMPLEMENTED, "evaluate"),
            loss=0.0,
            num_examples=0,
            metrics={},
        )

    def to_client(self) -> Client:
        """This client itself (so `client_fn` may return `x.to_client()` for any client)."""
        return self
