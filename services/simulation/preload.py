"""Imported by the forkserver before it forks any worker: imports the ClientApp there.

`multiprocessing` lets a forkserver import modules by name before it serves; this module
is that name. It reads which app to load from `APP_VARIABLE` (set only while the pool
launches the forkserver), so that every forked worker starts with the app, and torch or
scikit-learn with it, already imported: the import is paid once for all workers. A failure
is left for the workers to meet again and report, so that the forkserver itself lives.
"""

from __future__ import annotations

import json
import os

from stamen.client import ClientApp
from stamen.common.errors import AppLoadError
from stamen.common.loading import load_app

from . import worker  # noqa: F401  (imports what every worker needs: the codec, the SDK)
from .launcher import APP_VARIABLE

__all__: list[str] = []


def _preload() -> None:
    spec = os.environ.get(APP_VARIABLE)
    if not spec:
        return
    app_ref, directory = json.loads(spec)
    try:
        load_app(app_ref, ClientApp, directory)
    except AppLoadError:
        return


_preload()
