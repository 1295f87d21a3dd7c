"""App bundles: an app's folder as one zip, named by the sha256 of its bytes.

`stamen build` makes one, the SuperLink keeps it, the runner and the SuperNodes unpack
it. Building is reproducible: the same files give the same bytes, hence the same hash
(entries sorted, fixed timestamps and permissions), so a bundle is stored and shipped
once however often it is submitted, and every receiver checks what it got against
the name it asked for.

What goes in: every file under the app folder except hidden ones (`.git`, `.venv`),
caches and build output (`__pycache__`, `*.pyc`, `build`, `dist`, `*.egg-info`), earlier
bundles (`*.bundle`) and what `[tool.stamen.app] exclude` lists (glob patterns relative to
the folder). The folder's pyproject.toml must name both components.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConfigError, IntegrityError
from .project import PYPROJECT, read_project

__all__ = [
    "BUNDLE_SUFFIX",
    "MAX_BUNDLE_SIZE",
    "Bundle",
    "build_bundle",
    "bundle_hash",
    "read_bundle_project",
    "unpack_bundle",
]

BUNDLE_SUFFIX = ".bundle"
MAX_BUNDLE_SIZE = 64 * 1024 * 1024
"""Bytes, by default: a bundle carries code and small files; data and weights stay on
the nodes. It travels in chunks, so the limit is a choice (`stamen build/run
--max-bundle-size`, `stamen-superlink --max-bundle-size`), not the wire's."""

_EXCLUDED_DIRS = {"__pycache__", "build", "dist"}
_EXCLUDED_SUFFIXES = (".pyc", ".pyo", BUNDLE_SUFFIX)
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Bundle:
    """A built bundle: its bytes, their sha256 (hex) and the app it holds."""

    data: bytes
    hash: str
    name: str
    version: str
    files: tuple[str, ...]

    @property
    def filename(self) -> str:
        """`NAME-VERSION.HASH8.bundle`: where `stamen build` writes it."""
        return f"{self.name or 'app'}-{self.version or '0'}.{self.hash[:8]}{BUNDLE_SUFFIX}"


def bundle_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_bundle(directory: str | Path, max_size: int | None = None) -> Bundle:
    """Zip the app folder `directory` reproducibly; ConfigError when it is not an app (no
    pyproject naming both components) or the bundle would exceed `max_size` bytes
    (default MAX_BUNDLE_SIZE)."""
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(f"{str(directory)!r} is not a directory")
    project = read_project(root)
    if project.path is None:
        raise ConfigError(f"{str(directory)!r} has no {PYPROJECT}: it is not an app folder")
    for kind in ("serverapp", "clientapp"):
        project.component(kind, None, "a component")  # raises, naming what is missing
    excluded = _exclude_patterns(project.path)
    files = sorted(_app_files(root, excluded))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            info = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (root / name).read_bytes())
    data = buffer.getvalue()
    limit = MAX_BUNDLE_SIZE if max_size is None else max_size
    if len(data) > limit:
        raise ConfigError(
            f"the bundle of {str(directory)!r} is {len(data) / 2**20:.1f} MiB, over the "
            f"{limit / 2**20:g} MiB limit: leave data and weights out with "
            "[tool.stamen.app] exclude = [...] in its pyproject.toml (or raise "
            "--max-bundle-size)"
        )
    return Bundle(data, bundle_hash(data), project.name, project.version, tuple(files))


def _exclude_patterns(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as file:
        document: dict[str, Any] = tomllib.load(file)
    for tool in ("stamen", "flwr"):
        app = document.get("tool", {}).get(tool, {}).get("app", {})
        patterns = app.get("exclude") if isinstance(app, dict) else None
        if patterns is None:
            continue
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConfigError(f"{pyproject}: [tool.{tool}.app] exclude must be a list of globs")
        return patterns
    return []


def _app_files(root: Path, excluded: list[str]) -> list[str]:
    names: list[str] = []
    for folder, dirs, files in os.walk(root):
        relative = Path(folder).relative_to(root)
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".") and d not in _EXCLUDED_DIRS and not d.endswith(".egg-info")
        ]
        for file in files:
            name = (relative / file).as_posix()
            if file.startswith(".") or file.endswith(_EXCLUDED_SUFFIXES):
                continue
            if any(fnmatch(name, pattern) for pattern in excluded):
                continue
            names.append(name)
    return names


def read_bundle_project(data: bytes) -> dict[str, Any]:
    """The bundle's pyproject.toml, parsed; IntegrityError when the bundle has none."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            text = archive.read(PYPROJECT)
        parsed: dict[str, Any] = tomllib.loads(text.decode())
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise IntegrityError(f"not an app bundle: {exc}") from None
    return parsed


def unpack_bundle(data: bytes, expected_hash: str, cache: str | Path) -> Path:
    """Check `data` against `expected_hash` and unpack it into `cache/<hash>` (once: a
    folder already there is reused). IntegrityError for a mismatch or a bad archive."""
    actual = bundle_hash(data)
    if actual != expected_hash:
        raise IntegrityError(f"bundle {expected_hash} does not match its bytes (sha256 {actual})")
    target = Path(cache) / expected_hash
    if target.is_dir():
        return target
    Path(cache).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{expected_hash[:8]}-", dir=cache))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts:
                    raise IntegrityError(
                        f"bundle {expected_hash}: entry {name!r} leaves its folder"
                    )
            archive.extractall(staging)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not another unpacker that got there first
                raise
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"bundle {expected_hash} is not a zip archive: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
