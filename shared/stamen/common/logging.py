"""Log setup for the command-line entry points and worker processes: one line per record.

    2026-11-28 01:02:03 INFO superlink.serve: Fleet API listening on 0.0.0.0:9092
    2026-11-28 01:02:04 WARNING supernode.agent: lost the SuperLink [node_id=7]
    2026-11-28 01:02:05 INFO client.numpy_client [worker 4242]: ...

The same timestamp format in every process, Stamen's loggers without their `stamen.`
prefix, colours only on a terminal. A record logged with `extra={"run_id": ...,
"node_id": ...}` shows those ids at its end unless its message names them already.
`--log-format json` gives one JSON object per line instead (`time`, `level`, `logger`,
`message`, the context ids, `process` for a worker, `exception`).

Library code only calls `logging.getLogger(__name__)`; a CLI calls `setup_logging` once.
The chosen format is exported as STAMEN_LOG_FORMAT, so the processes it starts (worker
processes, runners) log alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any, Literal, TextIO

__all__ = [
    "CONTEXT_FIELDS",
    "FORMAT_ENV",
    "ContextFormatter",
    "JsonFormatter",
    "LogFormat",
    "setup_logging",
]

CONTEXT_FIELDS = ("run_id", "node_id")
"""Record attributes (set through `extra=`) appended to the line when present."""

FORMAT_ENV = "STAMEN_LOG_FORMAT"
"""The environment variable that carries the log format to child processes."""

LogFormat = Literal["text", "json"]

_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_PREFIX = "stamen."
_COLORS = {"DEBUG": "\033[2m", "WARNING": "\033[33m", "ERROR": "\033[31m", "CRITICAL": "\033[31m"}
_DIM, _RESET = "\033[2m", "\033[0m"


def short_name(name: str) -> str:
    """`stamen.superlink.serve` -> `superlink.serve`; other libraries' names stay."""
    return name.removeprefix(_PREFIX)


def _context(record: logging.LogRecord, message: str) -> list[tuple[str, Any]]:
    """The context fields of the record that its message does not already name."""
    fields = []
    for name in CONTEXT_FIELDS:
        if hasattr(record, name):
            value = getattr(record, name)
            if not re.search(rf"\b{re.escape(str(value))}\b", message):
                fields.append((name, value))
    return fields


class ContextFormatter(logging.Formatter):
    """`time LEVEL name [label]: message [run_id=3 node_id=7]`, coloured if asked."""

    def __init__(self, *, color: bool = False, label: str = "") -> None:
        super().__init__(datefmt=_DATE_FORMAT)
        self._color = color
        self._label = f" [{label}]" if label else ""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        context = " ".join(f"{k}={v}" for k, v in _context(record, message))
        level, name = record.levelname, short_name(record.name)
        if self._color:
            level = f"{_COLORS[level]}{level}{_RESET}" if level in _COLORS else level
            name = f"{_DIM}{name}{_RESET}"
        line = f"{self.formatTime(record, _DATE_FORMAT)} {level} {name}{self._label}: {message}"
        if context:
            line += f" [{context}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for log collectors."""

    def __init__(self, *, label: str = "") -> None:
        super().__init__()
        self._label = label

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": short_name(record.name),
            "message": message,
        }
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if self._label:
            entry["process"] = self._label
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(
    level: str | int = "INFO",
    stream: TextIO | None = None,
    *,
    fmt: LogFormat | None = None,
    label: str = "",
) -> None:
    """Send log records at `level` and above to `stream` (stderr), replacing prior setup.

    `fmt`: "text" (default: from STAMEN_LOG_FORMAT, else text) or "json"; `label` names
    the process on each line (a worker's "worker 4242"). Colours when `stream` is a TTY.
    """
    out = sys.stderr if stream is None else stream
    chosen = fmt or ("json" if os.environ.get(FORMAT_ENV) == "json" else "text")
    os.environ[FORMAT_ENV] = chosen
    handler = logging.StreamHandler(out)
    if chosen == "json":
        handler.setFormatter(JsonFormatter(label=label))
    else:
        color = _isatty(out) and "NO_COLOR" not in os.environ
        handler.setFormatter(ContextFormatter(color=color, label=label))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # grpclib logs each cancelled call and expired deadline at INFO: routine for long-polls.
    logging.getLogger("grpclib").setLevel(max(root.level, logging.WARNING))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
