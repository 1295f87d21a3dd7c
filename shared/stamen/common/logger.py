"""Flower's logging helpers for apps (`flwr.common.logger`): `log(INFO, "...")` and friends.

Apps log through the "stamen" logger; a CLI's handlers (`stamen.common.logging`) show it.
"""

from __future__ import annotations

import logging
from typing import Any

from stamen.common.errors import ConfigError
from stamen.compat.unsupported import unsupported_attributes

__all__ = [
    "FLOWER_LOGGER",
    "LOGGER_NAME",
    "configure",
    "log",
    "warn_deprecated_feature",
    "warn_deprecated_feature_with_example",
    "warn_preview_feature",
    "warn_unsupported_feature",
]

LOGGER_NAME = "stamen"
FLOWER_LOGGER = logging.getLogger(LOGGER_NAME)
"""The logger an app's `log(...)` calls write to (Flower's name for it)."""


def log(level: int, msg: object, *args: Any, **kwargs: Any) -> None:
    """`logging.Logger.log` on the app logger: `log(INFO, "round %d", 3)`."""
    FLOWER_LOGGER.log(level, msg, *args, **kwargs)


def configure(identifier: str, filename: str | None = None, host: str | None = None) -> None:
    """Also write the app logger's records to `filename`, each line tagged `identifier`."""
    if host is not None:
        raise ConfigError("configure(host=...): Stamen sends no logs to a remote HTTP server")
    if filename:
        handler = logging.FileHandler(filename)
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(
            logging.Formatter(f"{identifier} | %(levelname)s %(name)s %(asctime)s | %(message)s")
        )
        FLOWER_LOGGER.addHandler(handler)


def warn_preview_feature(name: str) -> None:
    log(logging.WARNING, "PREVIEW FEATURE: %s: it may change or go in a later version", name)


def warn_deprecated_feature(name: str) -> None:
    log(logging.WARNING, "DEPRECATED FEATURE: %s: it will go in a later version", name)


def warn_deprecated_feature_with_example(
    deprecation_message: str, example_message: str, code_example: str
) -> None:
    log(logging.WARNING, "DEPRECATED FEATURE: %s", deprecation_message)
    log(logging.INFO, "FEATURE UPDATE: %s\n%s", example_message, code_example)


def warn_unsupported_feature(name: str) -> None:
    log(logging.WARNING, "UNSUPPORTED FEATURE: %s", name)


__getattr__ = unsupported_attributes(__name__)
