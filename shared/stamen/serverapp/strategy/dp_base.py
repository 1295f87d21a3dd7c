"""What the Message-API DP wrappers share: delegation, reply checks, the aggregate's noise."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server.grid import Grid
from stamen.server.strategy.dp import CLIENTS_DISCREPANCY_WARNING
from stamen.server.strategy.dp_core import CentralDP

from ._models import to_arrayrecord
from .strategy import Strategy

__all__ = ["DifferentialPrivacyWrapper", "validate_replies"]

logger = logging.getLogger(__name__)


def validate_replies(
    replies: list[Message], num_sampled_clients: int, strict: bool = False
) -> bool:
    """False (aggregation skipped) if any reply is an error: dropping a client's update
    would change the sensitivity the noise was calibrated for. Warns on a count mismatch,
    which also skips aggregation when `strict` (an accountant counts on that number)."""
    errors = [message for message in replies if message.has_error()]
    for message in errors:
        logger.info(
            "Received error in reply from node %d: %s",
            message.metadata.src_node_id,
            message.error,
        )
    if errors:
        logger.info("aggregate_train: Some clients reported errors. Skipping aggregation.")
        return False
    logger.info("aggregate_train: Received %s results and %s failures", len(replies), 0)
    if len(replies) != num_sampled_clients:
        logger.warning(CLIENTS_DISCREPANCY_WARNING, len(replies), num_sampled_clients)
        return not strict
    return True


_DP = "dp"
_INNER = "inner."


class DifferentialPrivacyWrapper(CentralDP, Strategy):
    """Wraps `strategy`: evaluation is delegated; training adds clipping and noise."""

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        seed: int | None,
    ) -> None:
        super().__init__(noise_multiplier, num_sampled_clients, seed)
        self.strategy = strategy

    def _checkpoint_state(self) -> RecordDict:
        """The clipping norm, the noise generator's state, and the wrapped strategy's own
        state (under "inner.")."""
        noise = json.dumps(self.rng.bit_generator.state)
        state = RecordDict(
            {_DP: ConfigRecord({"clipping-norm": self.clipping_norm, "noise-generator": noise})}
        )
        for key, value in self.strategy._checkpoint_state().items():
            state[_INNER + key] = value
        return state

    def _restore_state(self, state: RecordDict) -> None:
        if _DP not in state:
            super()._restore_state(state)  # nothing, or not this strategy's
            return
        saved = state.config_records[_DP]
        self.clipping_norm = float(saved["clipping-norm"])  # type: ignore[arg-type]
        self.rng.bit_generator.state = json.loads(str(saved["noise-generator"]))
        inner = RecordDict(
            {k.removeprefix(_INNER): v for k, v in state.items() if k.startswith(_INNER)}
        )
        self.strategy._restore_state(inner)

    def _add_noise(self, aggregated: ArrayRecord) -> ArrayRecord:
        keys = list(aggregated.keys())
        return to_arrayrecord(keys, self._noised([aggregated[key].numpy() for key in keys]))

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's evaluation instructions."""
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The wrapped strategy's evaluation aggregate."""
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        """Log the DP settings, then the wrapped strategy's."""
        logger.info("\t├──> DP settings:")
        logger.info("\t│\t├── Noise multiplier: %s", self.noise_multiplier)
        logger.info("\t│\t└── Clipping norm: %s", self.clipping_norm)
        self._summary_privacy()
        self.strategy.summary()

    def _summary_privacy(self) -> None:
        """Log the privacy spent, where a subclass accounts for it."""
