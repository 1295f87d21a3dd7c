"""Message-API strategies: `Strategy.start(grid, initial_arrays, ...)` runs the rounds.

Flower exports no Message-API FedOpt here (its base class lives in `.fedopt`).
Keep the lists below sorted, one name a line.
"""

from .bulyan import Bulyan
from .dp_adaptive_clipping import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
)
from .dp_fixed_clipping import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from .fedavg import FedAvg
from .fedavgm import FedAvgM
from .fedmedian import FedMedian
from .fedopt import FedAdagrad, FedAdam, FedYogi
from .fedprox import FedProx
from .fedtrimmedavg import FedTrimmedAvg
from .fedxgb_bagging import FedXgbBagging
from .fedxgb_cyclic import FedXgbCyclic
from .krum import Krum
from .multikrum import MultiKrum
from .qfedavg import QFedAvg
from .result import Result
from .strategy import Strategy

__all__ = [
    "Bulyan",
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedXgbBagging",
    "FedXgbCyclic",
    "FedYogi",
    "Krum",
    "MultiKrum",
    "QFedAvg",
    "Result",
    "Strategy",
]
