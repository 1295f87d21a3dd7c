"""The server-optimizer arguments of FedOpt, FedAdam, FedYogi and FedAdagrad, both APIs.

The four classes of each API differ only in the optimizer they apply and in the defaults
of `eta`, `eta_l`, `beta_1`, `beta_2` and `tau`. So each API has one constructor (on its
FedOpt), whose optimizer arguments default to None, "this class's default"; a subclass
names its optimizer and its defaults (`FedOptArguments.variant` and `.defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .server_opt import AdaptiveOptimizer, Variant

__all__ = ["FedOptArguments", "OptimizerDefaults"]


@dataclass(frozen=True)
class OptimizerDefaults:
    """A FedOpt class's defaults for its server optimizer (Flower's, per class)."""

    eta: float
    eta_l: float
    beta_1: float
    beta_2: float
    tau: float


class FedOptArguments:
    """Sets `eta`, `eta_l`, `beta_1`, `beta_2`, `tau` and the `optimizer` they configure."""

    variant: ClassVar[Variant | None] = None
    """The server optimizer applied after FedAvg's aggregate (None: FedAvg's aggregate)."""
    defaults: ClassVar[OptimizerDefaults]
    """What an argument left at None takes."""

    eta: float
    eta_l: float
    beta_1: float
    beta_2: float
    tau: float
    optimizer: AdaptiveOptimizer | None

    def _set_optimizer(
        self,
        eta: float | None,
        eta_l: float | None,
        beta_1: float | None,
        beta_2: float | None,
        tau: float | None,
    ) -> None:
        if self.variant == "adagrad" and (beta_1 is not None or beta_2 is not None):
            raise TypeError(
                f"{type(self).__name__} takes no beta_1 or beta_2: Adagrad has no moments "
                "to decay (use FedAdam or FedYogi for those)"
            )
        defaults = self.defaults
        self.eta = defaults.eta if eta is None else eta
        self.eta_l = defaults.eta_l if eta_l is None else eta_l
        self.beta_1 = defaults.beta_1 if beta_1 is None else beta_1
        self.beta_2 = defaults.beta_2 if beta_2 is None else beta_2
        self.tau = defaults.tau if tau is None else tau
        self.optimizer = (
            None
            if self.variant is None
            else AdaptiveOptimizer(self.variant, self.eta, self.beta_1, self.beta_2, self.tau)
        )
