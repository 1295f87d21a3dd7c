"""Reply contents as plain lists of arrays for the kernels, and the way back to a record."""

from __future__ import annotations

from stamen.common.legacy import NDArrays
from stamen.common.records import Array, ArrayRecord, RecordDict

__all__ = ["reply_models", "to_arrayrecord"]


def reply_models(contents: list[RecordDict]) -> tuple[list[str], list[NDArrays]]:
    """The array keys (the first reply's order) and each reply's arrays in that order.

    The arrays share memory with the replies: nothing is copied.
    """
    named = [
        {key: array for record in content.array_records.values() for key, array in record.items()}
        for content in contents
    ]
    keys = list(named[0]) if named else []
    return keys, [[arrays[key].numpy() for key in keys] for arrays in named]


def to_arrayrecord(keys: list[str], arrays: NDArrays) -> ArrayRecord:
    """An ArrayRecord of `arrays` under `keys`."""
    return ArrayRecord({key: Array(array) for key, array in zip(keys, arrays, strict=True)})
