"""Client-level privacy accounting for the DP strategies (Flower's, without dp-accounting).

accountant = RdpAccountant(PrivacyConfig(1e-5, 100, NeighboringRelation.ADD_OR_REMOVE_ONE,
                                         SamplingMethod.NO_AMPLIFICATION, max_epsilon=8.0))
strategy = DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1.0, 0.5, 10,
                                                      accountant=accountant)
... strategy.privacy_spent()  # PrivacySpent(epsilon=..., delta=1e-05, ...)
"""

from .accountant import RdpAccountant
from .events import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyAccountant,
    PrivacyBudgetExhausted,
    PrivacyConfig,
    PrivacySpent,
    SamplingMethod,
)

__all__ = [
    "GaussianPrivacyEvent",
    "NeighboringRelation",
    "PrivacyAccountant",
    "PrivacyBudgetExhausted",
    "PrivacyConfig",
    "PrivacySpent",
    "RdpAccountant",
    "SamplingMethod",
]
