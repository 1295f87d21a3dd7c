"""The legacy (Flower-style) API: Parameters and FitIns/FitRes/EvaluateIns/EvaluateRes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from stamen.codec import decode_message, encode_message
from stamen.common.legacy import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Status,
    bytes_to_ndarray,
    evaluateins_to_recorddict,
    evaluateres_to_recorddict,
    fitins_to_recorddict,
    fitres_to_recorddict,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
    read_only_ndarrays,
    recorddict_to_evaluateins,
    recorddict_to_evaluateres,
    recorddict_to_fitins,
    recorddict_to_fitres,
)
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, RecordDict


def _model() -> NDArrays:
    return [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([1, -2], dtype=np.int64),
        np.array(0.5),
        np.zeros((0, 4), dtype=np.float16),
        np.array([True, False]),
    ]


def _assert_same(left: NDArrays, right: NDArrays) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def _over_the_wire(record: RecordDict) -> RecordDict:
    envelope, objects = encode_message(Message(record, 1, "train"))
    return decode_message(envelope, objects).content


def test_parameters_round_trip() -> None:
    parameters = ndarrays_to_parameters(_model())
    assert parameters.tensor_type == "numpy.ndarray"
    assert all(isinstance(t, bytes) for t in parameters.tensors)
    _assert_same(parameters_to_ndarrays(parameters), _model())
    assert parameters_to_ndarrays(ndarrays_to_parameters([])) == []


def _eager(arrays: NDArrays) -> Parameters:
    return Parameters([ndarray_to_bytes(a) for a in arrays])


def test_parameters_hold_arrays_until_tensors_are_read() -> None:
    model = [*_model(), np.asfortranarray(np.arange(6.0).reshape(2, 3))]
    parameters = ndarrays_to_parameters(model)
    again = parameters_to_ndarrays(parameters)
    _assert_same(again, model)
    assert again[-1].flags.f_contiguous  # as np.load gives a Fortran-order .npy
    assert all(a.flags.writeable for a in again)
    # Snapshots both ways: neither the caller's arrays nor the returned ones reach it.
    model[0][0, 0] = 99
    again[1][0] = 99
    _assert_same(parameters_to_ndarrays(parameters), [*_model(), model[-1]])
    # Reading `tensors` gives np.save's bytes, which from then on are the truth.
    assert parameters == _eager([*_model(), model[-1]])
    assert parameters.tensors == _eager([*_model(), model[-1]]).tensors
    twin = ndarrays_to_parameters(_model())
    assert twin == ndarrays_to_parameters(_model())
    assert twin._arrays is not None  # compared as arrays: no .npy bytes written
    assert twin != ndarrays_to_parameters(_model()[:1])
    parameters.tensors = parameters.tensors[:1]
    _assert_same(parameters_to_ndarrays(parameters), _model()[:1])


def test_parameters_from_a_record_share_its_memory_until_handed_out() -> None:
    record = _over_the_wire(fitins_to_recorddict(FitIns(ndarrays_to_parameters(_model()), {})))
    fitins = recorddict_to_fitins(record)
    received = record["fitins.parameters"]
    assert isinstance(received, ArrayRecord)
    shared = read_only_ndarrays(fitins.parameters)[0]
    assert np.shares_memory(shared, received.to_numpy_ndarrays()[0])  # held, not copied
    arrays = parameters_to_ndarrays(fitins.parameters)
    _assert_same(arrays, _model())
    arrays[0][:] = 7  # the client's copy: the received record keeps its values
    _assert_same(parameters_to_ndarrays(recorddict_to_fitins(record).parameters), _model())


def test_read_only_ndarrays_share_memory_and_refuse_writes() -> None:
    parameters = ndarrays_to_parameters(_model())
    views = read_only_ndarrays(parameters)
    _assert_same(views, _model())
    assert not any(v.flags.writeable for v in views)
    assert np.shares_memory(views[0], read_only_ndarrays(parameters)[0])
    with pytest.raises(ValueError, match="read-only"):
        views[0][0, 0] = 1
    eager = _eager(_model())  # from .npy bytes: decoded, so fresh arrays
    _assert_same(read_only_ndarrays(eager), _model())


def test_parameters_refuse_pickled_objects() -> None:
    with pytest.raises(ValueError, match="allow_pickle"):
        ndarrays_to_parameters([np.array([{"a": 1}], dtype=object)])


@pytest.mark.parametrize("wire", [False, True], ids=["records", "wire"])
def test_fitins_round_trip(wire: bool) -> None:
    ins = FitIns(ndarrays_to_parameters(_model()), {"lr": 0.1, "epochs": 2, "opt": "sgd"})
    record = fitins_to_recorddict(ins)
    back = recorddict_to_fitins(_over_the_wire(record) if wire else record)
    _assert_same(parameters_to_ndarrays(back.parameters), _model())
    assert back.config == ins.config


@pytest.mark.parametrize("wire", [False, True], ids=["records", "wire"])
def test_evaluateins_round_trip(wire: bool) -> None:
    ins = EvaluateIns(ndarrays_to_parameters(_model()), {"batch": 32, "flag": True})
    record = evaluateins_to_recorddict(ins)
    back = recorddict_to_evaluateins(_over_the_wire(record) if wire else record)
    _assert_same(parameters_to_ndarrays(back.parameters), _model())
    assert back.config == ins.config


@pytest.mark.parametrize("wire", [False, True], ids=["records", "wire"])
def test_fitres_round_trip(wire: bool) -> None:
    res = FitRes(
        Status(Code.OK, "Success"),
        ndarrays_to_parameters(_model()),
        num_examples=1234,
        metrics={"loss": 0.25, "name": "c1", "blob": b"\x01", "done": False},
    )
    record = fitres_to_recorddict(res)
    back = recorddict_to_fitres(_over_the_wire(record) if wire else record)
    assert back.status == res.status
    assert back.num_examples == 1234
    assert back.metrics == res.metrics
    _assert_same(parameters_to_ndarrays(back.parameters), _model())


@pytest.mark.parametrize("wire", [False, True], ids=["records", "wire"])
def test_evaluateres_round_trip(wire: bool) -> None:
    res = EvaluateRes(
        Status(Code.EVALUATE_NOT_IMPLEMENTED, "no evaluate"),
        loss=0.75,
        num_examples=10,
        metrics={"accuracy": 0.9},
    )
    record = evaluateres_to_recorddict(res)
    back = recorddict_to_evaluateres(_over_the_wire(record) if wire else record)
    assert back == res
    assert back.status.code is Code.EVALUATE_NOT_IMPLEMENTED


def test_record_keys_follow_the_convention() -> None:
    parameters = ndarrays_to_parameters(_model()[:1])
    assert list(fitins_to_recorddict(FitIns(parameters, {}))) == [
        "fitins.parameters",
        "fitins.config",
    ]
    assert list(fitres_to_recorddict(FitRes(Status(), parameters, 1))) == [
        "fitres.parameters",
        "fitres.num_examples",
        "fitres.metrics",
        "fitres.status",
    ]


def test_missing_records_give_defaults() -> None:
    empty = RecordDict()
    fitres = recorddict_to_fitres(empty)
    assert (fitres.status, fitres.num_examples, fitres.metrics) == (Status(), 0, {})
    assert fitres.parameters.tensors == []
    evaluateres = recorddict_to_evaluateres(empty)
    assert (evaluateres.loss, evaluateres.num_examples) == (0.0, 0)
    fitins = recorddict_to_fitins(empty)
    assert (fitins.parameters, fitins.config) == (Parameters(tensors=[]), {})


def test_unsupported_config_values_fail_at_conversion() -> None:
    bad: dict[str, Any] = {"nested": {"a": 1}}
    with pytest.raises(TypeError, match="nested"):
        fitins_to_recorddict(FitIns(ndarrays_to_parameters([]), bad))


# --- .npy conversions: numpy's own bytes and arrays, with the headers reused ------------


def _npy_cases() -> list[np.ndarray[Any, Any]]:
    grid = np.arange(12, dtype=np.float64).reshape(3, 4)
    return [
        *_model(),
        grid,
        np.asfortranarray(grid),  # written in Fortran order
        grid[:, ::2],  # neither C nor Fortran contiguous
        grid.T,
        np.arange(5, dtype=">i4"),  # big-endian
        np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
        np.zeros((2, 0, 3), dtype=np.uint8),
        np.array(7, dtype=np.int16),
        np.array(["a", "bc"]),  # not a plain number: numpy's own path
        np.array([1, 2], dtype="datetime64[s]"),
        np.zeros(2, dtype=[("x", "<f4"), ("y", "<i2")]),
        np.ma.masked_array([1.0, 2.0], mask=[False, True]),
    ]


def _np_save(array: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _np_load(data: bytes) -> np.ndarray[Any, Any]:
    loaded: np.ndarray[Any, Any] = np.load(io.BytesIO(data), allow_pickle=False)
    return loaded


@pytest.mark.parametrize("case", range(len(_npy_cases())))
def test_npy_bytes_and_arrays_are_numpys(case: int) -> None:
    for _ in range(2):  # the second time from the cached header
        array = _npy_cases()[case]
        data = ndarray_to_bytes(array)
        assert data == _np_save(array)
        loaded, expected = bytes_to_ndarray(data), _np_load(data)
        assert type(loaded) is type(expected)
        assert loaded.dtype == expected.dtype
        assert loaded.shape == expected.shape
        assert loaded.tobytes("A") == expected.tobytes("A")
        assert loaded.flags.writeable
        assert loaded.flags.c_contiguous == expected.flags.c_contiguous
        assert loaded.flags.f_contiguous == expected.flags.f_contiguous
        assert not np.shares_memory(loaded, np.frombuffer(data, dtype=np.uint8))


def test_npy_loading_refuses_what_numpy_refuses() -> None:
    data = ndarray_to_bytes(np.arange(4, dtype=np.float32))
    bytes_to_ndarray(data)  # the header is cached now
    for broken in (data[:-1], data[:12], b"", b"\x93NUMPY"):
        with pytest.raises((ValueError, EOFError)) as ours:
            bytes_to_ndarray(broken)
        with pytest.raises((ValueError, EOFError)) as numpys:
            _np_load(broken)
        assert (type(ours.value), str(ours.value)) == (type(numpys.value), str(numpys.value))
    with pytest.raises(ValueError, match="allow_pickle"):
        bytes_to_ndarray(np.array([None], dtype=object).dumps())
