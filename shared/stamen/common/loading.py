"""Loading apps from `module:attribute` references, the way every CLI names them.

Every way a reference can fail (malformed, missing directory, a module that does not
import or raises while importing, a missing attribute, an object of the wrong kind)
becomes one `AppLoadError` whose message is a single line a person can act on.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, overload

from stamen.compat import FLWR_COMPAT_VARIABLE, install_flwr_alias

from .errors import AppLoadError

__all__ = ["load_app"]

T = TypeVar("T")

_app_directories: list[Path] = []
"""Directories earlier loads put first on sys.path (their modules may need forgetting)."""


@overload
def load_app(reference: str, expected: type[T], directory: str | Path | None = None) -> T: ...
@overload
def load_app(
    reference: str, expected: tuple[type[T], ...], directory: str | Path | None = None
) -> T: ...


def load_app(
    reference: str,
    expected: type[Any] | tuple[type[Any], ...],
    directory: str | Path | None = None,
) -> Any:
    """Import `module` and return its `attribute` (dotted), checked to be an `expected`.

    With `directory`, the module is looked up there first; a module of the same name that
    an earlier load imported from another directory is forgotten, so the new one is used.
    With STAMEN_FLWR_COMPAT=1 (`--flwr-compat`), the app's `import flwr...` lines get the
    stamen modules, in whichever process loads it.
    """
    if os.environ.get(FLWR_COMPAT_VARIABLE) == "1":
        install_flwr_alias()
    module_name, attribute = _parse(reference)
    if directory is not None:
        _put_first_on_path(reference, Path(directory))
    module = _import(reference, module_name, directory)
    app = _resolve(reference, module, attribute, expected)
    if not isinstance(app, expected):
        raise AppLoadError(
            reference,
            f"{attribute!r} in module {module_name!r} is of type {type(app).__name__}, "
            f"expected {_names(expected)}",
        )
    return app


def _parse(reference: str) -> tuple[str, str]:
    module_name, colon, attribute = reference.partition(":")
    if not colon or not _is_dotted_name(module_name) or not _is_dotted_name(attribute):
        raise AppLoadError(
            reference, "expected 'module:attribute' (for example 'client:app' or 'pkg.mod:app')"
        )
    return module_name, attribute


def _is_dotted_name(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _put_first_on_path(reference: str, directory: Path) -> None:
    path = directory.expanduser().resolve()
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise AppLoadError(reference, f"directory {str(directory)!r} {problem}")
    entry = str(path)
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)
    _forget_shadowed_modules(path)
    if path not in _app_directories:
        _app_directories.append(path)
    importlib.invalidate_caches()  # files written since the last import must be seen


def _forget_shadowed_modules(path: Path) -> None:
    """Drop modules an earlier load imported from another app directory under a name that
    `path` provides too (tests load `client:app` from several directories)."""
    others = [d for d in _app_directories if d != path]
    if not others:
        return
    provided = {child.stem for child in path.iterdir() if child.suffix == ".py"}
    provided |= {child.name for child in path.iterdir() if (child / "__init__.py").is_file()}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name.partition(".")[0] not in provided or file is None:
            continue
        origin = Path(file).resolve()
        if not origin.is_relative_to(path) and any(origin.is_relative_to(d) for d in others):
            del sys.modules[name]


def _import(reference: str, module_name: str, directory: str | Path | None) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            where = "" if directory is None else f"in {str(directory)!r} and "
            raise AppLoadError(
                reference,
                f"no module named {missing!r} (looked {where}on sys.path; pass --dir "
                "with the folder that holds it)",
            ) from None
        raise AppLoadError(
            reference,
            f"module {module_name!r} does not import: {_describe(exc)}{_location(exc)}",
        ) from None
    except SyntaxError as exc:
        raise AppLoadError(
            reference,
            f"module {module_name!r} has a syntax error: {exc.msg} "
            f"({exc.filename}, line {exc.lineno})",
        ) from None
    except (Exception, SystemExit) as exc:  # user code runs at import and may raise anything
        raise AppLoadError(
            reference,
            f"importing module {module_name!r} raised {_describe(exc)}{_location(exc)}",
        ) from None


def _resolve(
    reference: str,
    module: ModuleType,
    attribute: str,
    expected: type[Any] | tuple[type[Any], ...],
) -> object:
    value: object = module
    try:
        for part in attribute.split("."):
            value = getattr(value, part)
    except AttributeError:
        candidates = [n for n, v in vars(module).items() if isinstance(v, expected)]
        hint = f"; its {_names(expected)} objects: {', '.join(candidates)}" if candidates else ""
        raise AppLoadError(
            reference, f"module {module.__name__!r} has no attribute {attribute!r}{hint}"
        ) from None
    except Exception as exc:  # a module-level __getattr__ or a property may raise anything
        raise AppLoadError(
            reference, f"looking up {attribute!r} raised {_describe(exc)}{_location(exc)}"
        ) from None
    return value


def _names(expected: type[Any] | tuple[type[Any], ...]) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(kind.__name__ for kind in kinds)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _location(exc: BaseException) -> str:
    """Where user code raised: the innermost frame that is a real file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    if not frames:
        return ""
    return f" ({frames[-1].filename}, line {frames[-1].lineno})"
