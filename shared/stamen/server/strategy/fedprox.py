"""FedProx, legacy API: FedAvg that sends the clients the weight of a proximal term."""

from __future__ import annotations

from collections.abc import Callable

from stamen.common.legacy import FitIns, Parameters, Scalar

from ..client_manager import ClientManager
from ..client_proxy import ClientProxy
from .fedavg import EvaluateFn, FedAvg, MetricsAggregationFn

__all__ = ["FedProx"]


class FedProx(FedAvg):
    r"""Federated optimization with a proximal term (https://arxiv.org/abs/1812.06127).

    The server aggregates as FedAvg and adds "proximal_mu" to every training config; the
    client adds (mu / 2) * ||w - w_global||^2 to its loss, for example in PyTorch:

    .. code:: python

        global_params = [p.detach().clone() for p in net.parameters()]  # before training
        ...
        proximal_term = sum((w - g).norm(2) for w, g in zip(net.parameters(), global_params))
        loss = criterion(net(x), y) + (config["proximal_mu"] / 2) * proximal_term

    Parameters
    ----------
    fraction_fit : float (default: 1.0)
        Fraction of the available clients sampled for training.
    fraction_evaluate : float (default: 1.0)
        Fraction of the available clients sampled for evaluation.
    min_fit_clients : int (default: 2)
        Minimum number of clients sampled for training.
    min_evaluate_clients : int (default: 2)
        Minimum number of clients sampled for evaluation.
    min_available_clients : int (default: 2)
        Minimum number of clients connected before a round starts.
    evaluate_fn : Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict] | None]
        Centralized evaluation of the global model, or None.
    on_fit_config_fn, on_evaluate_config_fn : Callable[[int], dict[str, Scalar]]
        The config sent with each round's training / evaluation instructions.
    accept_failures : bool (default: True)
        Whether a round with failures is still aggregated.
    initial_parameters : Parameters, optional
        The initial global model.
    fit_metrics_aggregation_fn, evaluate_metrics_aggregation_fn : MetricsAggregationFn
        Aggregate the clients' metrics, or None.
    proximal_mu : float
        The weight of the proximal term (required): 0.0 is FedAvg, larger values keep
        the clients' models closer to the global one.
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
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        proximal_mu: float,
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
            fit_metrics_aggregation_fn=fit_metrics_aggregation_fn,
            evaluate_metrics_aggregation_fn=evaluate_metrics_aggregation_fn,
        )
        self.proximal_mu = proximal_mu

    def __repr__(self) -> str:
        return f"FedProx(accept_failures={self.accept_failures})"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """FedAvg's instructions, each config with "proximal_mu" added."""
        pairs = super().configure_fit(server_round, parameters, client_manager)
        if not pairs:
            return []
        ins = pairs[0][1]  # FedAvg shares one FitIns: keep sharing it (one encoding)
        shared = FitIns(ins.parameters, {**ins.config, "proximal_mu": self.proximal_mu})
        return [(client, shared) for client, _ in pairs]
