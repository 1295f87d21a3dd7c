"""Imported by the forkserver before it forks any worker: imports the ClientApp there.

`multiprocessing` lets a forkserver import modules by name before it serves; this module
is that name. It reads which app to load from `APP_VARIABLE` (set only while the pool
launches the forkserver), so that every forked worker starts with the app, and torch or
scikit-learn with it, already imported: the import is paid once for all workers. A failure
is left for the workers to meet again and report, so that the forkserver itself lives.

An app that imported torch gets `torch._dynamo` too (`warm`). Then everything imported
is frozen out of the garbage collector: the workers' collections skip it instead of
walking (and so copying) those pages in every worker.
"""

from __future__ import annotations

import gc
import json
import os

from stamen.client import ClientApp
from stamen.common.errors import AppLoadError
from stamen.common.loading import load_app

from . import worker  # noqa: F401  (imports what every worker needs: the codec, the SDK)
from .launcher import APP_VARIABLE
from .warm import import_lazy_modules

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
    import_lazy_modules()
    gc.freeze()


_preload()
