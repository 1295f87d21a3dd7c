"""Strategies: how a round samples nodes and aggregates their replies.

Keep the lists below sorted, one name a line.
"""

from .aggregate import aggregate, aggregate_inplace, weighted_loss_avg
from .bulyan import Bulyan
from .dp_adaptive_clipping import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
)
from .dp_fixed_clipping import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from .dpfedavg import DPFedAvgAdaptive, DPFedAvgFixed
from .fault_tolerant_fedavg import FaultTolerantFedAvg
from .fedavg import FedAvg
from .fedavg_android import FedAvgAndroid
from .fedavgm import FedAvgM
from .fedmedian import FedMedian
from .fedopt import FedAdagrad, FedAdam, FedOpt, FedYogi
from .fedprox import FedProx
from .fedtrimmedavg import FedTrimmedAvg
from .fedxgb_bagging import FedXgbBagging
from .fedxgb_cyclic import FedXgbCyclic
from .fedxgb_nn_avg import FedXgbNnAvg
from .krum import Krum
from .qfedavg import QFedAvg
from .strategy import Strategy

__all__ = [
    "Bulyan",
    "DPFedAvgAdaptive",
    "DPFedAvgFixed",
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
    "FaultTolerantFedAvg",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgAndroid",
    "FedAvgM",
    "FedMedian",
    "FedOpt",
    "FedProx",
    "FedTrimmedAvg",
    "FedXgbBagging",
    "FedXgbCyclic",
    "FedXgbNnAvg",
    "FedYogi",
    "Krum",
    "QFedAvg",
    "Strategy",
    "aggregate",
    "aggregate_inplace",
    "weighted_loss_avg",
]
