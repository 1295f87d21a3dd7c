"""FedAvgAndroid: FedAvg for Flower's Android clients, whose tensors are raw float32 bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from stamen.common.legacy import EvaluateRes, FitRes, NDArrays, Parameters, Scalar

from ..client_proxy import ClientProxy
from .aggregate import aggregate, ordered, weighted_loss_avg
from .fedavg import EvaluateFn, FedAvg

__all__ = ["FedAvgAndroid"]


class FedAvgAndroid(FedAvg):
    """FedAvg whose Parameters hold each array as raw float32 bytes (tensor_type
    "numpy.nda"), the format of Flower's Android SDK; metrics are not aggregated.

    Parameters
    ----------
    fraction_fit, fraction_evaluate, min_fit_clients, min_evaluate_clients,
    min_available_clients, evaluate_fn, on_fit_config_fn, on_evaluate_config_fn,
    accept_failures, initial_parameters
        As for `FedAvg`.
    """

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters | None = None,
    ) -> None:
        super().__init__(
            fraction_fit=fraction_fit,
            fraction_evaluate=fraction_evaluate,
            min_fit_clients=min_fit_clients,
            min_evaluate_clients=min_evaluate_clients,
            min_available_clients=min_available_clients,
            evaluate_fn=evaluate_fn,
            on_fit_config_fn=on_fit_config_fn,
            on_evaluate_config_fn=on_evaluate_config_fn,
            accept_failures=accept_failures,
            initial_parameters=initial_parameters,
        )

    def __repr__(self) -> str:
        return f"FedAvg(accept_failures={self.accept_failures})"

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        if self.evaluate_fn is None:
            return None
        return self.evaluate_fn(server_round, self.parameters_to_ndarrays(parameters), {})

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        weighted = [
            (self.parameters_to_ndarrays(res.parameters), res.num_examples)
            for _, res in ordered(results)
        ]
        return self.ndarrays_to_parameters(aggregate(weighted)), {}

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        if not results or (failures and not self.accept_failures):
            return None, {}
        return weighted_loss_avg((res.num_examples, res.loss) for _, res in results), {}

    def ndarrays_to_parameters(self, ndarrays: NDArrays) -> Parameters:
        """Each array as raw bytes."""
        return Parameters(
            tensors=[self.ndarray_to_bytes(a) for a in ndarrays], tensor_type="numpy.nda"
        )

    def parameters_to_ndarrays(self, parameters: Parameters) -> NDArrays:
        """Each tensor read as a flat float32 array."""
        return [self.bytes_to_ndarray(tensor) for tensor in parameters.tensors]

    def ndarray_to_bytes(self, ndarray: npt.NDArray[Any]) -> bytes:
        """The array's raw bytes."""
        return ndarray.tobytes()

    def bytes_to_ndarray(self, tensor: bytes) -> npt.NDArray[Any]:
        """A flat float32 array over `tensor` (no copy)."""
        return np.frombuffer(tensor, dtype=np.float32)
