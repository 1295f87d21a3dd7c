"""Records (Array, ArrayRecord, MetricRecord, ConfigRecord, RecordDict) and Message rules."""

from __future__ import annotations

import pickle
import time
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from stamen.common.errors import InvalidMessageError
from stamen.common.message import (
    DEFAULT_TTL,
    SUPERLINK_NODE_ID,
    Error,
    ErrorCode,
    Message,
    MessageType,
)
from stamen.common.records import (
    Array,
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    RecordDict,
)

DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    np.complex128,
]


@pytest.fixture(scope="module")
def torch() -> ModuleType:
    module: ModuleType = pytest.importorskip("torch")
    return module


# --- Array ------------------------------------------------------------------------------


def test_array_from_contiguous_numpy_shares_memory() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    array = Array(x)
    assert (array.dtype, array.shape, array.nbytes) == ("<f4", (3, 4), 48)
    assert np.shares_memory(array.numpy(), x)
    assert np.shares_memory(np.frombuffer(array.data, dtype=np.uint8), x)


def test_array_from_non_contiguous_numpy_copies() -> None:
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    view = x[:, ::2]
    array = Array(view)
    assert array.shape == (3, 2)
    assert not np.shares_memory(array.numpy(), x)
    assert bytes(array.data) == view.tobytes(order="C")
    assert np.array_equal(Array(x.T).numpy(), x.T)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype_round_trips(dtype: Any) -> None:
    x = (np.arange(-3, 3) % 2 if dtype is np.bool_ else np.arange(6)).astype(dtype).reshape(2, 3)
    array = Array(x)
    assert array.dtype == np.dtype(dtype).str
    rebuilt = Array(dtype=array.dtype, shape=array.shape, data=bytes(array.data))
    assert rebuilt == array
    assert rebuilt.numpy().dtype == x.dtype
    assert np.array_equal(rebuilt.numpy(), x)


def test_big_endian_dtype_is_kept() -> None:
    x = np.arange(4, dtype=">f8")
    array = Array(x)
    assert array.dtype == ">f8"
    assert np.array_equal(Array(dtype=">f8", shape=(4,), data=bytes(array.data)).numpy(), x)


@pytest.mark.parametrize("shape", [(), (0,), (2, 0, 3), (1, 1, 1)])
def test_zero_dim_and_empty_shapes(shape: tuple[int, ...]) -> None:
    x = np.ones(shape, dtype=np.float64)
    array = Array(x)
    assert array.shape == shape
    assert array.nbytes == x.nbytes
    assert array.numpy().shape == shape
    rebuilt = Array(dtype="<f8", shape=shape, data=bytes(array.data))
    assert rebuilt.numpy().shape == shape


def test_numpy_scalar_becomes_a_zero_dim_array() -> None:
    assert Array(np.float32(1.5)).shape == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([1, "a"], dtype=object), "dtype object"),
        (np.array([[1], [1, 2]], dtype=object), "ragged"),
        (np.array(["ab"]), "cannot be sent"),
        (np.zeros(2, dtype=[("a", "<f4")]), "cannot be sent"),
        ([[1], [1, 2]], "numpy array or torch tensor, got list"),
        ([1.0, 2.0], "got list"),
    ],
)
def test_unsendable_arrays_are_rejected(value: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Array(value)


def test_array_parts_must_agree() -> None:
    with pytest.raises(ValueError, match="need 8"):
        Array(dtype="<f4", shape=(2,), data=b"\x00" * 7)
    with pytest.raises(ValueError, match="negative"):
        Array(dtype="<f4", shape=(-1,), data=b"")
    with pytest.raises(TypeError, match="not both"):
        Array(np.zeros(2), dtype="<f4")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="needs an array"):
        Array(dtype="<f4", shape=(0,))  # type: ignore[call-overload]


def test_array_from_parts_is_zero_copy_and_read_only_for_bytes() -> None:
    raw = bytearray(np.arange(4, dtype=np.int32).tobytes())
    array = Array(dtype="<i4", shape=(4,), data=raw)
    array.numpy()[0] = 9
    assert raw[0] == 9
    frozen = Array(dtype="<i4", shape=(4,), data=bytes(raw))
    assert not frozen.numpy().flags.writeable


def test_array_from_torch_shares_memory(torch: ModuleType) -> None:
    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    array = Array(tensor)
    assert (array.dtype, array.shape) == ("<f4", (2, 3))
    array.numpy()[0, 0] = 42.0
    assert tensor[0, 0].item() == 42.0
    back = array.torch()
    assert back.data_ptr() == tensor.data_ptr()


def test_array_from_torch_detaches_and_copies_strided(torch: ModuleType) -> None:
    weights = torch.ones(3, 4, requires_grad=True)
    assert Array(weights).shape == (3, 4)
    strided = torch.arange(12).reshape(3, 4).t()
    assert np.array_equal(Array(strided).numpy(), strided.numpy())


def test_read_only_buffer_gives_a_writable_tensor_copy(torch: ModuleType) -> None:
    array = Array(dtype="<f4", shape=(2,), data=np.ones(2, dtype=np.float32).tobytes())
    tensor = array.torch()
    tensor += 1
    assert tensor.tolist() == [2.0, 2.0]


def test_bfloat16_is_rejected(torch: ModuleType) -> None:
    with pytest.raises(TypeError, match=r"bfloat16.*\.float\(\)"):
        Array(torch.zeros(2, dtype=torch.bfloat16))


def test_array_equality_and_repr() -> None:
    assert Array(np.zeros(3)) == Array(np.zeros(3))
    assert Array(np.zeros(3)) != Array(np.zeros(3, dtype=np.float32))
    assert Array(np.zeros(3)) != Array(np.zeros((3, 1)))
    assert Array(np.zeros(3)) != Array(np.ones(3))
    assert "nbytes=24" in repr(Array(np.zeros(3)))


# --- ArrayRecord ------------------------------------------------------------------------


def test_array_record_from_list_keeps_order() -> None:
    arrays = [np.full(2, i, dtype=np.int32) for i in range(12)]
    record = ArrayRecord(arrays)
    assert list(record) == [str(i) for i in range(12)]
    assert [a.tolist() for a in record.to_numpy_ndarrays()] == [a.tolist() for a in arrays]
    assert record.nbytes == 12 * 8


def test_array_record_from_state_dict_and_back(torch: ModuleType) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    state = model.state_dict()
    record = ArrayRecord(state)
    assert list(record) == list(state)
    restored = record.to_torch_state_dict()
    assert list(restored) == list(state)
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    fresh.load_state_dict(restored)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, state[name])


def test_array_record_rejects_bad_values_naming_the_key() -> None:
    with pytest.raises(TypeError, match=r"ArrayRecord\['w'\]"):
        ArrayRecord({"w": np.array([None])})
    with pytest.raises(TypeError, match="keys must be str"):
        ArrayRecord({1: np.zeros(1)})


# --- MetricRecord and ConfigRecord ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (3, 3),
        (0.5, 0.5),
        (np.int64(7), 7),
        (np.float32(0.25), 0.25),
        ([1, 2], [1, 2]),
        ([0.5, np.float64(1.5)], [0.5, 1.5]),
        ((1, 2), [1, 2]),
        ([], []),
    ],
)
def test_metric_values(value: Any, stored: Any) -> None:
    record = MetricRecord({"m": value})
    assert record["m"] == stored
    assert type(record["m"]) is type(stored)


@pytest.mark.parametrize(
    "value", [True, np.bool_(True), "0.9", None, [1, 0.5], [[1]], [True], {"a": 1}, b"x"]
)
def test_unsupported_metric_values_name_the_key(value: Any) -> None:
    with pytest.raises(TypeError, match=r"MetricRecord\['acc'\]: unsupported value"):
        MetricRecord({"acc": value})


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (True, True),
        (np.bool_(False), False),
        (3, 3),
        (np.int32(3), 3),
        (0.5, 0.5),
        ("adam", "adam"),
        (b"\x00\x01", b"\x00\x01"),
        ([True, False], [True, False]),
        ([1, 2], [1, 2]),
        ([0.5], [0.5]),
        (["a", "b"], ["a", "b"]),
        ([b"a"], [b"a"]),
        ([], []),
    ],
)
def test_config_values(value: Any, stored: Any) -> None:
    record = ConfigRecord({"c": value})
    assert record["c"] == stored
    assert type(record["c"]) is type(stored)


@pytest.mark.parametrize(
    "value", [None, {"a": 1}, [1, "a"], [True, 1], [1, 0.5], [[1]], bytearray(b"x"), object()]
)
def test_unsupported_config_values_name_the_key(value: Any) -> None:
    with pytest.raises(TypeError, match=r"ConfigRecord\['lr'\]: unsupported value"):
        ConfigRecord({"lr": value})


def test_records_are_ordered_mutable_mappings() -> None:
    record = ConfigRecord({"b": 1, "a": 2})
    record["c"] = 3
    del record["b"]
    assert list(record.items()) == [("a", 2), ("c", 3)]
    assert record == ConfigRecord({"a": 2, "c": 3})
    assert record != ConfigRecord({"c": 3, "a": 2})  # order is part of a record
    assert record != MetricRecord({"a": 2, "c": 3})


# --- RecordDict -------------------------------------------------------------------------


def test_record_dict_holds_only_records() -> None:
    records = RecordDict(
        {"arrays": ArrayRecord([np.zeros(2)]), "metrics": MetricRecord({"loss": 0.1})}
    )
    records["config"] = ConfigRecord({"lr": 0.1})
    assert list(records) == ["arrays", "metrics", "config"]
    assert list(records.array_records) == ["arrays"]
    assert list(records.metric_records) == ["metrics"]
    assert list(records.config_records) == ["config"]
    with pytest.raises(TypeError, match=r"RecordDict\['x'\]: expected ArrayRecord"):
        records["x"] = {"lr": 0.1}
    with pytest.raises(TypeError, match="keys must be str"):
        records[0] = ConfigRecord()  # type: ignore[index]


def test_pickle_round_trip() -> None:
    records = RecordDict(
        {
            "model": ArrayRecord({"w": np.arange(6, dtype=np.float16).reshape(2, 3)}),
            "metrics": MetricRecord({"n": 3, "hist": [0.5, 1.5]}),
            "config": ConfigRecord({"name": "x", "blob": b"\x00", "flags": [True]}),
        }
    )
    restored = pickle.loads(pickle.dumps(records))
    assert restored == records
    assert restored["model"]["w"].numpy().dtype == np.float16
    message = Message(records, dst_node_id=3, message_type=MessageType.TRAIN)
    copy = pickle.loads(pickle.dumps(message))
    assert copy.metadata == message.metadata
    assert copy.content == records


# --- Message ----------------------------------------------------------------------------


def test_instruction_metadata() -> None:
    before = time.time()
    message = Message(RecordDict(), 7, "train", group_id="round-1")
    meta = message.metadata
    assert (meta.src_node_id, meta.dst_node_id) == (SUPERLINK_NODE_ID, 7)
    assert (meta.message_type, meta.group_id, meta.reply_to_message_id) == ("train", "round-1", "")
    assert meta.ttl == DEFAULT_TTL
    assert before <= meta.created_at <= time.time()
    assert len(meta.message_id) == 32
    assert Message(RecordDict(), 7, "train").metadata.message_id != meta.message_id


def test_query_types_may_be_named() -> None:
    assert Message(RecordDict(), 1, "query.properties").metadata.message_type == "query.properties"
    with pytest.raises(InvalidMessageError, match="'fit' is not one of"):
        Message(RecordDict(), 1, "fit")


def test_reply_swaps_source_and_destination() -> None:
    instruction = Message(RecordDict(), 7, "evaluate", ttl=100.0, group_id="g")
    instruction.metadata.run_id = 5
    reply = instruction.create_reply(RecordDict({"m": MetricRecord({"loss": 0.5})}))
    meta = reply.metadata
    assert (meta.src_node_id, meta.dst_node_id) == (7, SUPERLINK_NODE_ID)
    assert meta.reply_to_message_id == instruction.metadata.message_id
    assert meta.message_id != instruction.metadata.message_id
    assert (meta.run_id, meta.group_id, meta.message_type) == (5, "g", "evaluate")
    # A reply lives at most as long as what is left of the instruction's ttl.
    assert 0.0 < meta.ttl <= 100.0
    assert Message(RecordDict(), reply_to=instruction, ttl=5).metadata.ttl == 5.0


def test_reply_to_an_expired_instruction_has_zero_ttl() -> None:
    instruction = Message(RecordDict(), 7, "train", ttl=1.0)
    instruction.metadata.created_at -= 10
    assert instruction.create_reply(RecordDict()).metadata.ttl == 0.0


def test_error_reply() -> None:
    instruction = Message(RecordDict(), 2, "train")
    reply = instruction.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, "boom"))
    assert reply.has_error()
    assert not reply.has_content()
    assert reply.error == Error(ErrorCode.CLIENT_APP_RAISED, "boom")
    assert reply.metadata.reply_to_message_id == instruction.metadata.message_id
    with pytest.raises(InvalidMessageError, match="carries an error"):
        _ = reply.content


def test_content_message_has_no_error() -> None:
    message = Message(RecordDict(), 2, "train")
    assert message.has_content()
    assert not message.has_error()
    with pytest.raises(InvalidMessageError, match="carries no error"):
        _ = message.error
    message.content = RecordDict({"c": ConfigRecord({"a": 1})})
    assert message.content["c"]["a"] == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((RecordDict(), 1, "train"), {"error": Error(0)}, TypeError, "not both"),
        ((), {"dst_node_id": 1, "message_type": "train"}, TypeError, "neither"),
        (({"a": 1}, 1, "train"), {}, TypeError, "must be a RecordDict"),
        ((RecordDict(),), {}, TypeError, "needs dst_node_id and message_type"),
        ((RecordDict(), 1), {}, TypeError, "needs dst_node_id and message_type"),
    ],
)
def test_construction_rules(args: Any, kwargs: Any, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        Message(*args, **kwargs)


def test_reply_takes_destination_from_the_instruction() -> None:
    instruction = Message(RecordDict(), 2, "train")
    with pytest.raises(TypeError, match="takes its destination"):
        Message(RecordDict(), 3, reply_to=instruction)
