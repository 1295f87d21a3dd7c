"""Fixtures shared by the unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development CA and a server certificate for 127.0.0.1 (`make certs`)."""
    root = Path(__file__).resolve().parents[2]
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run(
        ["bash", str(root / "scripts" / "make-certs.sh"), str(directory)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return directory
