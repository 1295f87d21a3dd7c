"""Stop h2 from hex-dumping every DATA frame it receives.

h2 logs each received frame with `logger.trace("Received frame: %s", repr(frame))`: the
`repr` is built eagerly even though the default logger discards it, and for a DATA frame
it re-serializes and hex-encodes the whole body (measured: ~30% of the CPU of a chunk
stream). The override below describes a DATA frame by its length instead. It changes only
that debug text, never what goes on the wire; `install()` is idempotent and is called by
the code that creates gRPC servers and channels.
"""

from __future__ import annotations

from hyperframe.frame import DataFrame

__all__ = ["install", "installed"]


def _data_frame_body_repr(self: DataFrame) -> str:
    return f"<{len(self.data)} bytes>"


def install() -> None:
    """Replace `DataFrame._body_repr` with the cheap version (once per process)."""
    DataFrame._body_repr = _data_frame_body_repr  # type: ignore[method-assign,assignment]


def installed() -> bool:
    return DataFrame._body_repr is _data_frame_body_repr
