"""The one byte-view helper: every bytes-like value as flat unsigned bytes in C order."""

from __future__ import annotations

import numpy as np
import pytest
from stamen.common.buffers import byte_view


def test_a_flat_byte_view_is_returned_as_is_without_a_copy() -> None:
    data = bytearray(b"abcdef")
    view = byte_view(data)
    data[0] = ord("z")
    assert view.format == "B"
    assert view.ndim == 1
    assert bytes(view) == b"zbcdef"


@pytest.mark.parametrize("shape", [(3, 4), (2, 0, 5), (0,)])
def test_typed_and_multidimensional_views_become_flat_bytes(shape: tuple[int, ...]) -> None:
    array = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    view = byte_view(memoryview(array))
    assert view.format == "B"
    assert view.ndim == 1
    assert bytes(view) == array.tobytes()


def test_a_non_contiguous_view_is_copied_in_c_order() -> None:
    array = np.arange(12, dtype=np.int16).reshape(3, 4)[:, ::2]
    assert bytes(byte_view(memoryview(array))) == array.tobytes(order="C")
