"""Checkpoints of the round loop, so that a run continues from its last completed round.

After each round the loop saves its state (`LoopState`: the round, the global model, the
History, the sampler's state) to the grid's `checkpoints` store, when the grid has one
(the ServerApp runner's grid does: the SuperLink keeps the checkpoint); a loop that finds
a checkpoint at start skips the rounds it covers. The model travels as an ArrayRecord, so
its arrays are content-addressed objects like any message's; the rest is one JSON text.
Restoring the exact model bytes and the sampler makes a resumed deterministic run end
with the same model, bit for bit, as an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from stamen.common.errors import InvalidMessageError
from stamen.common.legacy import Parameters, arrayrecord_to_parameters, parameters_to_arrayrecord
from stamen.common.records import ConfigRecord, RecordDict

from .history import History

__all__ = ["CheckpointStore", "LoopState", "decode_state", "encode_state"]

_MODEL = "model"
_LOOP = "loop"


class CheckpointStore(Protocol):
    """Where a run's latest checkpoint is kept (a grid's `checkpoints`)."""

    def load(self) -> RecordDict | None:
        """The latest checkpoint, or None when the run has none yet."""
        ...

    def save(self, state: RecordDict) -> None:
        """Keep `state` as the latest checkpoint (replacing the one before)."""
        ...


@dataclass(frozen=True, slots=True)
class LoopState:
    server_round: int
    """The last completed round."""
    parameters: Parameters
    history: History
    sampling: Any = None
    """The client manager's sampling state (None: it keeps none)."""


def encode_state(state: LoopState) -> RecordDict:
    text = json.dumps(
        {
            "round": state.server_round,
            "history": _tagged(vars(state.history)),
            "sampling": _tagged(state.sampling),
        }
    )
    return RecordDict(
        {_MODEL: parameters_to_arrayrecord(state.parameters), _LOOP: ConfigRecord({"state": text})}
    )


def decode_state(record: RecordDict) -> LoopState:
    try:
        data = json.loads(str(record.config_records[_LOOP]["state"]))
        history = History()
        for name, value in _untagged(data["history"]).items():
            setattr(history, name, value)
        return LoopState(
            server_round=int(data["round"]),
            parameters=arrayrecord_to_parameters(record.array_records[_MODEL]),
            history=history,
            sampling=_untagged(data["sampling"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidMessageError(f"the run's checkpoint cannot be read: {exc!r}") from exc


def _tagged(value: Any) -> Any:
    """JSON for histories and sampler states: tuples and bytes kept apart from lists
    and strings."""
    if isinstance(value, tuple):
        return {"t": [_tagged(item) for item in value]}
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    if isinstance(value, dict):
        return {"d": [[key, _tagged(item)] for key, item in value.items()]}
    if isinstance(value, bytes):
        return {"b": value.hex()}
    return value


def _untagged(value: Any) -> Any:
    if isinstance(value, list):
        return [_untagged(item) for item in value]
    if isinstance(value, dict):
        if "t" in value:
            return tuple(_untagged(item) for item in value["t"])
        if "b" in value:
            return bytes.fromhex(value["b"])
        return {key: _untagged(item) for key, item in value["d"]}
    return value
