"""App bundles: reproducible, content-addressed, checked when unpacked."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from stamen.common import bundle as bundles
from stamen.common.bundle import build_bundle, bundle_hash, unpack_bundle
from stamen.common.errors import ConfigError, IntegrityError

PYPROJECT = """
[project]
name = "app"
version = "2.0"

[tool.stamen.app]
exclude = ["data/*"]

[tool.stamen.app.components]
serverapp = "server:app"
clientapp = "client:app"
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "pkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "server.py").write_text("app = 1\n")
    (root / "client.py").write_text("app = 2\n")
    (root / "pkg" / "__init__.py").write_text("")
    return root


def test_the_same_files_give_the_same_hash(app_dir: Path) -> None:
    first = build_bundle(app_dir)
    os.utime(app_dir / "server.py", (1, 1))  # times and permissions do not count
    (app_dir / "client.py").chmod(0o600)
    second = build_bundle(app_dir)
    assert first.data == second.data
    assert first.hash == second.hash == bundle_hash(first.data)
    assert first.filename == f"app-2.0.{first.hash[:8]}.bundle"


def test_a_changed_file_changes_the_hash(app_dir: Path) -> None:
    before = build_bundle(app_dir).hash
    (app_dir / "server.py").write_text("app = 3\n")
    assert build_bundle(app_dir).hash != before


def test_caches_hidden_files_bundles_and_excluded_files_stay_out(app_dir: Path) -> None:
    for name in ("__pycache__/x.pyc", ".git/HEAD", ".venv/bin/python", "data/big.npy",
                 "build/lib.txt", "x.egg-info/PKG-INFO"):  # fmt: skip
        (app_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (app_dir / name).write_text("x")
    (app_dir / "old.bundle").write_bytes(b"zip")
    (app_dir / ".env").write_text("SECRET=1")
    files = build_bundle(app_dir).files
    assert files == ("client.py", "pkg/__init__.py", "pyproject.toml", "server.py")


def test_an_app_needs_a_pyproject_naming_both_components(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no pyproject\.toml"):
        build_bundle(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.stamen.app.components]\nserverapp = "s:a"\n')
    with pytest.raises(ConfigError, match="declares no clientapp"):
        build_bundle(tmp_path)
    with pytest.raises(ConfigError, match="is not a directory"):
        build_bundle(tmp_path / "nowhere")


def test_a_bundle_over_the_limit_is_refused(app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (app_dir / "weights.bin").write_bytes(np.random.default_rng(0).bytes(2 << 20))
    with pytest.raises(ConfigError, match=r"is 2\.0 MiB, over the 1 MiB limit: leave data"):
        build_bundle(app_dir, max_size=1 << 20)
    monkeypatch.setattr(bundles, "MAX_BUNDLE_SIZE", 1 << 20)  # the default limit
    with pytest.raises(ConfigError, match=r"over the 1 MiB limit: .*raise --max-bundle-size"):
        build_bundle(app_dir)


def test_unpacking_checks_the_hash_and_happens_once(app_dir: Path, tmp_path: Path) -> None:
    built = build_bundle(app_dir)
    cache = tmp_path / "cache"
    folder = unpack_bundle(built.data, built.hash, cache)
    assert folder == cache / built.hash
    assert (folder / "pkg" / "__init__.py").is_file()
    assert unpack_bundle(built.data, built.hash, cache) == folder
    assert [p.name for p in cache.iterdir()] == [built.hash]  # no staging left behind
    with pytest.raises(IntegrityError, match="does not match its bytes"):
        unpack_bundle(built.data + b"x", built.hash, cache)


def test_an_entry_that_leaves_its_folder_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.py", "x")
    data = buffer.getvalue()
    with pytest.raises(IntegrityError, match="leaves its folder"):
        unpack_bundle(data, bundle_hash(data), tmp_path / "cache")
    assert not (tmp_path / "evil.py").exists()


def test_bytes_that_are_not_a_zip_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="is not a zip archive"):
        unpack_bundle(b"nope", bundle_hash(b"nope"), tmp_path)
