"""Log setup for the command-line entry points: one readable line per record.

    2026-11-28 01:02:03 INFO stamen.superlink.serve: Fleet API listening on 0.0.0.0:9092
    2026-11-28 01:02:04 WARNING stamen.supernode.agent: lost the SuperLink [node_id=7]

Library code only calls `logging.getLogger(__name__)`; a CLI calls `setup_logging` once.
A record logged with `extra={"run_id": ..., "node_id": ...}` shows them at its end.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["CONTEXT_FIELDS", "ContextFormatter", "setup_logging"]

CONTEXT_FIELDS = ("run_id", "node_id")
"""Record attributes (set through `extra=`) appended to the line when present."""

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class ContextFormatter(logging.Formatter):
    """The standard line, then `[run_id=3 node_id=7]` for the context fields a record has."""

    def __init__(self) -> None:
        super().__init__(_FORMAT, _DATE_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = " ".join(
            f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if hasattr(record, name)
        )
        return f"{line} [{context}]" if context else line


def setup_logging(level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Send log records at `level` and above to `stream` (stderr), replacing prior setup."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(ContextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # grpclib logs each cancelled call and expired deadline at INFO: routine for long-polls.
    logging.getLogger("grpclib").setLevel(max(root.level, logging.WARNING))
