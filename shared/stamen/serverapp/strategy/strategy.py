"""Strategy: the Message-API base class, and `start`, the round loop every strategy runs.

A strategy turns the global model into instructions (`configure_*`) and replies back
into a model and metrics (`aggregate_*`); `start` drives that over a Grid for a number
of rounds, logging what Flower 1.42 logs, and returns a `Result`. Beyond Flower, `start`
applies the run config's failure policy after each exchange (`failure_policy`), and
checkpoints each round to the grid's `checkpoints` store when it has one, resuming from
the latest checkpoint it finds (`_checkpoint`).
"""

from __future__ import annotations

import io
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

from stamen.common.errors import InvalidMessageError
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server.checkpoint import CheckpointStore
from stamen.server.client_proxy import failure_reason
from stamen.server.failure_policy import FailurePolicy, failure_policy
from stamen.server.grid import Grid
from stamen.server.tracking import report_result_round

from ._checkpoint import StartState, decode_start_state, encode_start_state
from .result import Result
from .strategy_utils import log_strategy_start_info, node_labels, run_config

__all__ = ["EvaluateFn", "Strategy"]

logger = logging.getLogger(__name__)

EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]
"""Centralized evaluation: (server round, global arrays) -> metrics, or None."""


class Strategy(ABC):
    """Abstract base class of the Message-API server strategies."""

    @abstractmethod
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The training instructions of round `server_round`: one message per sampled
        node, carrying `arrays` (the global model) and `config`."""

    @abstractmethod
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The new global arrays and the aggregated training metrics (None for either
        when there is nothing to aggregate)."""

    @abstractmethod
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The evaluation instructions of round `server_round` (none skips evaluation)."""

    @abstractmethod
    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The aggregated evaluation metrics, or None when there is nothing to aggregate."""

    @abstractmethod
    def summary(self) -> None:
        """Log the strategy's settings (called by `start`)."""

    def _checkpoint_state(self) -> RecordDict:
        """What the strategy keeps from round to round beyond the global arrays, saved
        with each checkpoint of `start` (none by default; a server optimizer overrides
        it with its moments)."""
        return RecordDict()

    def _restore_state(self, state: RecordDict) -> None:
        """Take back what `_checkpoint_state` saved (a run resumed from a checkpoint)."""
        if state:
            raise InvalidMessageError(
                f"the checkpoint holds strategy state ({', '.join(state)}) that "
                f"{type(self).__name__} does not keep: was it saved by another strategy?"
            )

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> Result:
        """Run `num_rounds` rounds of training, federated and centralized evaluation.

        Parameters
        ----------
        grid : Grid
            How the ServerApp reaches the nodes.
        initial_arrays : ArrayRecord
            The initial global model.
        num_rounds : int (default: 3)
            Number of rounds.
        timeout : float (default: 3600)
            Seconds to wait for the replies of each training or evaluation step.
        train_config, evaluate_config : ConfigRecord, optional
            Sent to the nodes with each training / evaluation instruction (empty if
            unset); the strategy adds "server-round".
        evaluate_fn : Callable[[int, ArrayRecord], MetricRecord | None], optional
            Centralized evaluation, called on the initial model (round 0) and after
            each round.

        Returns
        -------
        Result
            The final arrays and the metrics of every round.
        """
        logger.info("Starting %s strategy:", type(self).__name__)
        log_strategy_start_info(num_rounds, initial_arrays, train_config, evaluate_config)
        self.summary()
        logger.info("")

        train_config = ConfigRecord() if train_config is None else train_config
        evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
        policy = failure_policy(run_config(grid))
        store: CheckpointStore | None = getattr(grid, "checkpoints", None)
        saved = _resume(store)

        started = time.time()
        if saved is not None:
            logger.info("Resuming from the checkpoint of round %d", saved.server_round)
            self._restore_state(saved.strategy)
            result, arrays, first = saved.result, saved.arrays, saved.server_round + 1
        else:
            result, arrays, first = Result(), initial_arrays, 1
            if evaluate_fn is not None:
                metrics = evaluate_fn(0, initial_arrays)
                logger.info("Initial global evaluation results: %s", metrics)
                if metrics is not None:
                    result.evaluate_metrics_serverapp[0] = metrics

        for server_round in range(first, num_rounds + 1):
            round_started = time.perf_counter()
            logger.info("")
            logger.info("[ROUND %s/%s]", server_round, num_rounds)

            instructions = list(self.configure_train(server_round, arrays, train_config, grid))
            replies = grid.send_and_receive(instructions, timeout=timeout)
            failures = _check_failures(
                policy, server_round, "train", instructions, replies, timeout, grid
            )
            new_arrays, train_metrics = self.aggregate_train(server_round, replies)
            if new_arrays is not None:
                result.arrays = arrays = new_arrays
            if train_metrics is not None:
                logger.info("\t└──> Aggregated MetricRecord: %s", train_metrics)
                result.train_metrics_clientapp[server_round] = train_metrics

            instructions = list(
                self.configure_evaluate(server_round, arrays, evaluate_config, grid)
            )
            replies = grid.send_and_receive(instructions, timeout=timeout)
            failures += _check_failures(
                policy, server_round, "evaluate", instructions, replies, timeout, grid
            )
            evaluate_metrics = self.aggregate_evaluate(server_round, replies)
            if evaluate_metrics is not None:
                logger.info("\t└──> Aggregated MetricRecord: %s", evaluate_metrics)
                result.evaluate_metrics_clientapp[server_round] = evaluate_metrics

            if evaluate_fn is not None:
                logger.info("Global evaluation")
                metrics = evaluate_fn(server_round, arrays)
                logger.info("\t└──> MetricRecord: %s", metrics)
                if metrics is not None:
                    result.evaluate_metrics_serverapp[server_round] = metrics
            took = time.perf_counter() - round_started
            if store is not None:
                state = self._checkpoint_state()
                store.save(encode_start_state(server_round, arrays, result, state))
            report_result_round(result, server_round, took, _run_id(grid), failures=failures)

        logger.info("")
        logger.info("Strategy execution finished in %.2fs", time.time() - started)
        logger.info("")
        logger.info("Final results:")
        logger.info("")
        for line in io.StringIO(str(result)):
            logger.info("\t%s", line.strip("\n"))
        logger.info("")
        return result


def _resume(store: CheckpointStore | None) -> StartState | None:
    record = None if store is None else store.load()
    return None if record is None else decode_start_state(record)


def _check_failures(
    policy: FailurePolicy,
    server_round: int,
    phase: str,
    instructions: list[Message],
    replies: list[Message],
    timeout: float,
    grid: Grid,
) -> int:
    """Log each node that sent no result, named by its node_config, and fail the run
    when the run config's failure policy says so (RoundFailedError); else the number
    of nodes that sent no result (the round table's failures)."""
    answers = {reply.metadata.reply_to_message_id: reply for reply in replies}
    results, reasons = 0, []
    labels: dict[int, str] | None = None
    for instruction in instructions:
        reply = answers.get(instruction.metadata.message_id)
        if reply is not None and reply.has_content():
            results += 1
            continue
        if labels is None:
            labels = node_labels(grid)
        node_id = instruction.metadata.dst_node_id
        reason = f"{labels.get(node_id, f'node {node_id}')}: {failure_reason(reply, timeout)}"
        logger.warning("round %d %s failure: %s", server_round, phase, reason)
        reasons.append(reason)
    policy.check(server_round, phase, results, reasons)
    return len(reasons)


def _run_id(grid: Grid) -> int:
    """The run the grid serves (0 for a grid that does not say, as some test grids)."""
    run = getattr(grid, "run", None)
    return int(getattr(run, "run_id", 0))
