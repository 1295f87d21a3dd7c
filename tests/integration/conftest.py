"""Fixtures shared by the integration tests: the processes a test starts, and TLS files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import Procs, make_certs


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Every process the test starts; those still running at the end are killed."""
    with Procs(tmp_path / "logs") as started:
        yield started


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a certificate for localhost and 127.0.0.1, from scripts/make-certs.sh."""
    return make_certs(tmp_path_factory.mktemp("certs"))
