"""A bit-exact picture of records, for tests that compare contents across codecs."""

from __future__ import annotations

import struct
from typing import Any

from stamen.common.records import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict


def canon(value: Any) -> Any:
    """A bit-exact, type-tagged picture of a value (NaN == NaN, -0.0 != 0.0)."""
    if isinstance(value, RecordDict | ArrayRecord | MetricRecord | ConfigRecord):
        return (type(value).__name__, [(k, canon(v)) for k, v in value.items()])
    if isinstance(value, Array):
        return ("Array", value.dtype, value.shape, memoryview(value.data).tobytes())
    if isinstance(value, list):
        return ("list", [canon(v) for v in value])
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    return (type(value).__name__, value)
