"""DefaultWorkflow: Flower's legacy FL loop as a ServerApp main, in pluggable steps.

    app = ServerApp()

    @app.main()
    def main(grid, context):
        context = LegacyContext(context, config=ServerConfig(num_rounds=3), strategy=FedAvg())
        DefaultWorkflow()(grid, context)

`ServerApp(config=..., strategy=...)` runs the same. Between steps the global model lives
in `context.state.array_records["parameters"]` and the round in
`context.state.config_records["config"]["current_round"]`, so a custom `fit_workflow`
or `evaluate_workflow(grid, context)` (secure aggregation, say) reads and writes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeAlias

from stamen.common.context import Context
from stamen.common.legacy import (
    RAW_TENSOR_TYPE_KEY,
    Parameters,
    arrayrecord_to_parameters,
    parameters_to_arrayrecord,
    read_only_ndarrays,
)
from stamen.common.records import ArrayRecord, ConfigRecord

from ..grid import Grid
from ..legacy_context import LegacyContext
from ..loop import (
    CONFIG_KEY,
    CURRENT_ROUND,
    PARAMETERS_KEY,
    START_TIME,
    RoundLoop,
    bind_client_manager,
)
from ..tracking import record_history, report_round

__all__ = ["DefaultWorkflow", "Workflow", "default_evaluate_workflow", "default_fit_workflow"]

logger = logging.getLogger(__name__)

Workflow: TypeAlias = Callable[[Grid, Context], None]


class DefaultWorkflow:
    """[INIT], then each round: `fit_workflow`, centralized evaluation,
    `evaluate_workflow`; then [SUMMARY]. The History lands in `context.history`."""

    def __init__(
        self, fit_workflow: Workflow | None = None, evaluate_workflow: Workflow | None = None
    ) -> None:
        self.fit_workflow: Workflow = fit_workflow or default_fit_workflow
        self.evaluate_workflow: Workflow = evaluate_workflow or default_evaluate_workflow

    def __call__(self, grid: Grid, context: Context) -> None:
        legacy = _legacy(context)
        record_history(legacy.history)
        bind_client_manager(grid, legacy)
        loop = RoundLoop(grid, legacy)
        logger.info("[INIT]")
        saved = loop.resume()  # a run that goes on from its checkpoint
        _set_parameters(legacy, loop.initialize() if saved is None else saved.parameters)
        first = 1 if saved is None else saved.server_round + 1
        start = time.perf_counter()
        progress = ConfigRecord({START_TIME: start})
        legacy.state.config_records[CONFIG_KEY] = progress
        num_rounds = legacy.config.num_rounds
        for server_round in range(first, num_rounds + 1):
            round_start = time.perf_counter()
            logger.info("")
            logger.info("[ROUND %d]", server_round)
            progress[CURRENT_ROUND] = server_round
            self.fit_workflow(grid, legacy)
            loop.evaluate_centrally(server_round, _parameters(legacy), start)
            self.evaluate_workflow(grid, legacy)
            took = time.perf_counter() - round_start
            legacy.history.add_round_time(server_round, took)
            logger.info("round %d took %.2fs", server_round, took)
            loop.checkpoint(server_round, _parameters(legacy))
            report_round(legacy.history, server_round, legacy.run_id)
        legacy.history.final_arrays = _final_arrays(legacy)
        logger.info("")
        logger.info("[SUMMARY]")
        logger.info(
            "Run finished %d %s in %.2fs",
            num_rounds,
            "round" if num_rounds == 1 else "rounds",
            time.perf_counter() - start,
        )
        for line in repr(legacy.history).splitlines():
            logger.info("%s", line)


def default_fit_workflow(grid: Grid, context: Context) -> None:
    """One round of fit: the strategy's instructions out, its aggregate into the state."""
    legacy = _legacy(context)
    parameters = RoundLoop(grid, legacy).fit_round(_round(legacy), _parameters(legacy))
    _set_parameters(legacy, parameters)


def default_evaluate_workflow(grid: Grid, context: Context) -> None:
    """One round of federated evaluation of the global model in the state."""
    legacy = _legacy(context)
    RoundLoop(grid, legacy).evaluate_round(_round(legacy), _parameters(legacy))


def _legacy(context: Context) -> LegacyContext:
    if not isinstance(context, LegacyContext):
        raise TypeError(
            f"the default workflow needs a LegacyContext, got {type(context).__name__}: "
            "wrap it, LegacyContext(context, config=..., strategy=...)"
        )
    return context


def _round(context: LegacyContext) -> int:
    return int(context.state.config_records[CONFIG_KEY][CURRENT_ROUND])  # type: ignore[arg-type]


def _parameters(context: LegacyContext) -> Parameters:
    return arrayrecord_to_parameters(context.state.array_records[PARAMETERS_KEY])


def _final_arrays(context: LegacyContext) -> ArrayRecord:
    """The final model's arrays; opaque tensors (xgboost's JSON models) as uint8 bytes."""
    record = context.state.array_records[PARAMETERS_KEY]
    if RAW_TENSOR_TYPE_KEY in record:
        return ArrayRecord({k: a for k, a in record.items() if k != RAW_TENSOR_TYPE_KEY})
    return ArrayRecord(read_only_ndarrays(arrayrecord_to_parameters(record)))


def _set_parameters(context: LegacyContext, parameters: Parameters) -> None:
    context.state.array_records[PARAMETERS_KEY] = parameters_to_arrayrecord(parameters)
