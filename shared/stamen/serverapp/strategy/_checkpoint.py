"""Checkpoints of `Strategy.start`, so that a Message-API run continues from its last
completed round.

The same mechanism as the legacy loop's (`stamen.server.checkpoint`): after each round
`start` saves its state to the grid's `checkpoints` store when the grid has one (the
ServerApp runner's grid does: the SuperLink keeps it, the arrays as content-addressed
objects), and a `start` that finds a checkpoint skips the rounds it covers. The state is
one RecordDict: the global arrays, the Result's metrics of every round so far (as the
MetricRecords they are, so nothing is lost to a text format), the state of the global
`random` generator (the strategies sample nodes with it) and the strategy's own state
(`Strategy._checkpoint_state`, e.g. a server optimizer's moments). Restoring all of it
makes a resumed deterministic run end with the same arrays, bit for bit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TypeVar

from stamen.common.errors import InvalidMessageError
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from .result import Result

__all__ = ["StartState", "decode_start_state", "encode_start_state"]

T = TypeVar("T")

_ARRAYS = "start.arrays"
_LOOP = "start.loop"
_STRATEGY = "strategy."
_METRICS = {
    "train": "train_metrics_clientapp",
    "evaluate": "evaluate_metrics_clientapp",
    "serverapp": "evaluate_metrics_serverapp",
}


@dataclass(frozen=True, slots=True)
class StartState:
    server_round: int
    """The last completed round."""
    arrays: ArrayRecord
    """The global arrays after that round."""
    result: Result
    strategy: RecordDict
    """What the strategy keeps beyond the arrays (empty for most)."""


def encode_start_state(
    server_round: int, arrays: ArrayRecord, result: Result, strategy: RecordDict
) -> RecordDict:
    version, internal, gauss = random.getstate()
    loop = ConfigRecord(
        {
            "round": server_round,
            "result-has-arrays": bool(result.arrays),
            "random-version": version,
            "random-state": list(internal),
        }
    )
    if gauss is not None:
        loop["random-gauss"] = gauss
    record = RecordDict({_ARRAYS: arrays, _LOOP: loop})
    for kind, name in _METRICS.items():
        for past_round, metrics in getattr(result, name).items():
            record[f"{kind}.{past_round}"] = metrics
    for key, value in strategy.items():
        record[_STRATEGY + key] = value
    return record


def decode_start_state(record: RecordDict) -> StartState:
    """The saved state; puts the global `random` generator back as it was saved."""
    try:
        loop = record.config_records[_LOOP]
        arrays = record.array_records[_ARRAYS]
        result = Result(arrays=arrays if loop["result-has-arrays"] else ArrayRecord())
        strategy = RecordDict()
        for key, value in record.items():
            if key.startswith(_STRATEGY):
                strategy[key.removeprefix(_STRATEGY)] = value
                continue
            kind, _, past_round = key.partition(".")
            if kind in _METRICS and isinstance(value, MetricRecord):
                getattr(result, _METRICS[kind])[int(past_round)] = value
        version = _typed(loop, "random-version", int)
        internal = tuple(_typed(loop, "random-state", list))
        random.setstate((version, internal, loop.get("random-gauss")))
        server_round = _typed(loop, "round", int)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidMessageError(f"the run's checkpoint cannot be read: {exc!r}") from exc
    return StartState(server_round, arrays, result, strategy)


def _typed(record: ConfigRecord, key: str, kind: type[T]) -> T:
    value = record[key]
    if not isinstance(value, kind):
        raise TypeError(f"{key!r} is a {type(value).__name__}, not a {kind.__name__}")
    return value
