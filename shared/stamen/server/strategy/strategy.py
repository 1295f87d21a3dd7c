"""Strategy: the legacy interface that published Flower strategies implement."""

from __future__ import annotations

from abc import ABC, abstractmethod

from stamen.common.legacy import EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar

from ..client_manager import ClientManager
from ..client_proxy import ClientProxy

__all__ = ["Strategy"]


class Strategy(ABC):
    """Decides who trains on what, and how replies become the next global model.

    The round loop calls, per round: `configure_fit`, `aggregate_fit`, `evaluate`
    (centralized), `configure_evaluate`, `aggregate_evaluate`.
    """

    @abstractmethod
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """The initial global model, or None to ask one random node for its own."""

    @abstractmethod
    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """The nodes to train this round, each with its instructions."""

    @abstractmethod
    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """The new global model (None keeps the current one) and aggregated fit metrics."""

    @abstractmethod
    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """The nodes to evaluate this round ([] skips federated evaluation)."""

    @abstractmethod
    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """The aggregated loss (None records nothing) and evaluation metrics."""

    @abstractmethod
    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """Centralized evaluation on the server's own data, or None for none."""
