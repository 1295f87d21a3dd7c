"""SecAggWorkflow: SecAgg, i.e. SecAgg+ with every sampled node a neighbour of every other.

Each node shares its secrets with all the others, which costs O(n^2) key agreements and
masks but tolerates any dropouts that leave `reconstruction_threshold` nodes.
"""

from __future__ import annotations

from .secaggplus_workflow import SecAggPlusWorkflow

__all__ = ["SecAggWorkflow"]


class SecAggWorkflow(SecAggPlusWorkflow):
    """SecAgg with Flower's parameters; `reconstruction_threshold` as an int counts nodes,
    as a float it is a fraction of the sampled nodes."""

    def __init__(
        self,
        reconstruction_threshold: int | float,
        *,
        max_weight: float = 1000.0,
        clipping_range: float = 8.0,
        quantization_range: int = 4194304,
        modulus_range: int = 4294967296,
        timeout: float | None = None,
    ) -> None:
        super().__init__(
            num_shares=1.0,
            reconstruction_threshold=reconstruction_threshold,
            max_weight=max_weight,
            clipping_range=clipping_range,
            quantization_range=quantization_range,
            modulus_range=modulus_range,
            timeout=timeout,
        )
