"""Bytes-like values: the one `Buffer` alias and the one way to view them as flat bytes.

Arrays, objects and chunks travel as `bytes`, `bytearray` or `memoryview` (a view into a
numpy array, a shared-memory segment, a received frame) and are never copied for the
sake of a type. `byte_view` is how every layer (codec, object store, worker pool) reads
them: a flat view of unsigned bytes in C order.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Buffer", "byte_view"]

Buffer: TypeAlias = bytes | bytearray | memoryview


def byte_view(data: Buffer) -> memoryview:
    """`data` as a flat unsigned-byte view in C order, copying only non-contiguous views
    (which cannot be viewed flat)."""
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1:
        return view
    if not view.c_contiguous:
        return memoryview(view.tobytes())
    if view.nbytes == 0:
        # memoryview.cast refuses shapes with a zero in them.
        return memoryview(b"")
    return view.cast("B")
