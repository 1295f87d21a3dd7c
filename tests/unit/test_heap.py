"""The heap keeps chunk-sized buffers for reuse, instead of faulting them in anew."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Copies 1 MiB chunks through short-lived buffers, as a chunk stream's send path does,
# and prints the page faults that took (each fresh 1 MiB buffer faults ~256 pages).
_CHURN = """
import resource
from stamen.common.heap import keep_chunk_buffers
keep_chunk_buffers()
keep_chunk_buffers()
chunk = bytes(1 << 20)
bytes(bytearray(chunk))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    bytes(bytearray(chunk))
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults() -> int:
    run = subprocess.run(
        [sys.executable, "-c", _CHURN], capture_output=True, text=True, check=True, timeout=60
    )
    return int(run.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_chunk_buffers_are_reused_instead_of_faulted_in_again() -> None:
    assert _faults() < 200 * 10  # untuned, glibc faults ~256 pages per buffer
