"""The legacy API that published Flower apps speak: Parameters, FitIns/FitRes and friends.

Strategies and NumPyClients written against it move over by changing imports. On the
wire these become RecordDicts with the prefixed keys below, the one convention both the
server's strategy loop and the client's adapter use.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from .records import Array, ArrayRecord, ConfigRecord, RecordDict

__all__ = [
    "RAW_TENSOR_TYPE_KEY",
    "Code",
    "Config",
    "EvaluateIns",
    "EvaluateRes",
    "FitIns",
    "FitRes",
    "GetParametersIns",
    "GetParametersRes",
    "GetPropertiesIns",
    "GetPropertiesRes",
    "MessageTypeLegacy",
    "Metrics",
    "MetricsAggregationFn",
    "NDArray",
    "NDArrayFloat",
    "NDArrayInt",
    "NDArrays",
    "Parameters",
    "Properties",
    "Scalar",
    "Status",
    "Value",
    "bytes_to_ndarray",
    "evaluateins_to_recorddict",
    "evaluateres_to_recorddict",
    "fitins_to_recorddict",
    "fitres_to_recorddict",
    "getparametersins_to_recorddict",
    "getparametersres_to_recorddict",
    "getpropertiesins_to_recorddict",
    "getpropertiesres_to_recorddict",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
    "read_only_ndarrays",
    "recorddict_to_evaluateins",
    "recorddict_to_evaluateres",
    "recorddict_to_fitins",
    "recorddict_to_fitres",
    "recorddict_to_getparametersins",
    "recorddict_to_getparametersres",
    "recorddict_to_getpropertiesins",
    "recorddict_to_getpropertiesres",
]

Scalar: TypeAlias = bool | bytes | float | int | str
Value: TypeAlias = (
    bool
    | bytes
    | float
    | int
    | str
    | list[bool]
    | list[bytes]
    | list[float]
    | list[int]
    | list[str]
)
NDArray: TypeAlias = npt.NDArray[Any]
NDArrayInt: TypeAlias = npt.NDArray[np.int_]
NDArrayFloat: TypeAlias = npt.NDArray[np.float64]
NDArrays: TypeAlias = list[npt.NDArray[Any]]
Config: TypeAlias = dict[str, Scalar]
Metrics: TypeAlias = dict[str, Scalar]
Properties: TypeAlias = dict[str, Scalar]
MetricsAggregationFn: TypeAlias = Callable[[list[tuple[int, Metrics]]], Metrics]
"""Turns each node's (num_examples, metrics) into one aggregate."""


class Parameters:
    """Model parameters as serialized tensors (numpy's .npy format, like Flower).

    Made by `ndarrays_to_parameters` or from a message, it holds the arrays and writes
    their .npy bytes into `tensors` only when something reads `tensors`. The usual paths
    (a message to a NumPyClient and back, replies through FedAvg to the next round) never
    do, and each .npy conversion would copy the whole model once more. Once `tensors` is
    read or set, it is the one truth and the arrays are dropped.
    """

    __slots__ = ("_arrays", "_tensors", "tensor_type")

    def __init__(self, tensors: list[bytes], tensor_type: str = "numpy.ndarray") -> None:
        self._tensors: list[bytes] | None = tensors
        self._arrays: NDArrays | None = None
        self.tensor_type = tensor_type

    @classmethod
    def _holding(cls, arrays: NDArrays) -> Parameters:
        """Parameters over `arrays`, which nobody may change from now on (not copied)."""
        parameters = cls([])
        parameters._tensors, parameters._arrays = None, arrays
        return parameters

    @property
    def tensors(self) -> list[bytes]:
        if self._tensors is None:
            self._tensors = [ndarray_to_bytes(a) for a in self._arrays or []]
            self._arrays = None
        return self._tensors

    @tensors.setter
    def tensors(self, tensors: list[bytes]) -> None:
        self._tensors, self._arrays = tensors, None

    def __eq__(self, other: object) -> bool:
        """Equal .npy tensors; compared as arrays while both hold them (no .npy written)."""
        if not isinstance(other, Parameters):
            return NotImplemented
        if self.tensor_type != other.tensor_type:
            return False
        if self._arrays is not None and other._arrays is not None:
            return len(self._arrays) == len(other._arrays) and all(
                _npy_layout(a) == _npy_layout(b) and _npy_data(a) == _npy_data(b)
                for a, b in zip(self._arrays, other._arrays, strict=True)
            )
        return self.tensors == other.tensors

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it mirrors

    def __repr__(self) -> str:
        count = len(self._arrays if self._arrays is not None else self.tensors)
        return f"Parameters(tensors=<{count} tensors>, tensor_type={self.tensor_type!r})"


# .npy headers, reused: np.save and np.load spend most of their time on the header (a
# Python dict literal, parsed with `ast`), which is the same for every array of one dtype
# and shape. Plain numeric arrays take the cached path; anything else goes through numpy.
_NPY_MAGIC = b"\x93NUMPY\x01\x00"  # format version 1.0, what np.save writes
_NPY_KINDS = frozenset("biufc")
_NPY_CACHE_ENTRIES = 1024
_saved_headers: dict[tuple[str, tuple[int, ...], bool], bytes] = {}
_loaded_headers: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], bool, int]] = {}


def _plain(dtype: np.dtype[Any]) -> bool:
    """A number dtype that numpy saves as its plain string (no metadata, not user-defined)."""
    legacy = getattr(type(dtype), "_legacy", False)
    return dtype.kind in _NPY_KINDS and dtype.metadata is None and legacy is True


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _NPY_CACHE_ENTRIES:
        cache.clear()
    cache[key] = value


def _fortran(array: npt.NDArray[Any]) -> bool:
    """Whether .npy records `array` in Fortran order (as np.save decides)."""
    return not array.flags.c_contiguous and bool(array.flags.f_contiguous)


def _npy_layout(array: npt.NDArray[Any]) -> tuple[str, tuple[int, ...], bool]:
    return array.dtype.str, array.shape, _fortran(array)


def _npy_data(array: npt.NDArray[Any]) -> bytes:
    return array.tobytes("F" if _fortran(array) else "C")


def ndarray_to_bytes(ndarray: npt.NDArray[Any]) -> bytes:
    """The array in .npy format, byte for byte what `np.save` writes."""
    array = ndarray
    if type(array) is not np.ndarray or not _plain(array.dtype):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    fortran = _fortran(array)
    key = (array.dtype.str, array.shape, fortran)
    header = _saved_headers.get(key)
    if header is None:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        saved = buffer.getvalue()
        _remember(_saved_headers, key, saved[: len(saved) - array.nbytes])
        return saved
    return header + array.tobytes("F" if fortran else "C")


def bytes_to_ndarray(tensor: bytes) -> npt.NDArray[Any]:
    """The array that .npy bytes hold, as `np.load` reads it (a writable copy)."""
    data = tensor
    size = int.from_bytes(data[8:10], "little") + 10
    key = bytes(data[:size]) if data[:8] == _NPY_MAGIC else b""
    entry = _loaded_headers.get(key)
    if entry is None:
        array = _np_load(data)
        if key and type(array) is np.ndarray and _plain(array.dtype):
            fortran = _fortran(array)
            _remember(_loaded_headers, key, (array.dtype, array.shape, fortran, size))
        return array
    dtype, shape, fortran, offset = entry
    count = math.prod(shape)
    if len(data) - offset < count * dtype.itemsize:
        return _np_load(data)  # raises: the data is cut short
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset).copy()
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


def _np_load(data: bytes) -> npt.NDArray[Any]:
    array: npt.NDArray[Any] = np.load(io.BytesIO(data), allow_pickle=False)
    return array


def ndarrays_to_parameters(ndarrays: Sequence[npt.NDArray[Any]]) -> Parameters:
    """A snapshot of `ndarrays`: later changes to them do not reach the Parameters."""
    if all(type(a) is np.ndarray and _plain(a.dtype) for a in ndarrays):
        return Parameters._holding([_snapshot(a) for a in ndarrays])
    return Parameters(tensors=[ndarray_to_bytes(a) for a in ndarrays])


def parameters_to_ndarrays(parameters: Parameters) -> NDArrays:
    """Fresh, writable arrays (as `np.load` gives): changing them leaves `parameters` as is."""
    if parameters._arrays is not None:
        return [_snapshot(a) for a in parameters._arrays]
    return [bytes_to_ndarray(t) for t in parameters.tensors]


def read_only_ndarrays(parameters: Parameters) -> NDArrays:
    """The arrays without a copy where `parameters` holds them, read-only: for code that
    only reads them (aggregation), which would otherwise copy each model it reads."""
    if parameters._arrays is None:
        return parameters_to_ndarrays(parameters)
    views = [a.view() for a in parameters._arrays]
    for view in views:
        view.flags.writeable = False
    return views


def _snapshot(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A contiguous copy in the memory order that .npy would record for `array`."""
    fortran = _fortran(array)
    return np.array(array, copy=True, order="F" if fortran else "C")


class MessageTypeLegacy:
    """The message types of the legacy client calls beyond fit and evaluate."""

    GET_PARAMETERS = "query.get_parameters"
    GET_PROPERTIES = "query.get_properties"


class Code(IntEnum):
    OK = 0
    GET_PROPERTIES_NOT_IMPLEMENTED = 1
    GET_PARAMETERS_NOT_IMPLEMENTED = 2
    FIT_NOT_IMPLEMENTED = 3
    EVALUATE_NOT_IMPLEMENTED = 4


@dataclass
class Status:
    code: Code = Code.OK
    message: str = "Success"


@dataclass
class GetPropertiesIns:
    config: Config


@dataclass
class GetPropertiesRes:
    status: Status
    properties: dict[str, Scalar]


@dataclass
class GetParametersIns:
    config: Config


@dataclass
class GetParametersRes:
    status: Status
    parameters: Parameters


@dataclass
class FitIns:
    parameters: Parameters
    config: Config


@dataclass
class FitRes:
    status: Status
    parameters: Parameters
    num_examples: int
    metrics: Metrics = field(default_factory=dict)


@dataclass
class EvaluateIns:
    parameters: Parameters
    config: Config


@dataclass
class EvaluateRes:
    status: Status
    loss: float
    num_examples: int
    metrics: Metrics = field(default_factory=dict)


# --- RecordDict conventions -------------------------------------------------------------


RAW_TENSOR_TYPE_KEY = "legacy.tensor_type"
"""The ArrayRecord key that marks Parameters whose tensors are not .npy arrays.

Flower's legacy strategies also carry opaque bytes: xgboost's JSON models (tensor_type
""), FedAvgAndroid's raw float32 buffers ("numpy.nda"). Their record holds each tensor as
a uint8 array ("0", "1", ...) and, under this key, the tensor_type's UTF-8 bytes.
"""

_NPY_TENSOR_TYPE = "numpy.ndarray"


def parameters_to_arrayrecord(parameters: Parameters) -> ArrayRecord:
    if parameters._arrays is not None:
        return ArrayRecord([Array(a) for a in parameters._arrays])
    if parameters.tensor_type != _NPY_TENSOR_TYPE:
        raw = {str(i): _bytes_array(t) for i, t in enumerate(parameters.tensors)}
        raw[RAW_TENSOR_TYPE_KEY] = _bytes_array(parameters.tensor_type.encode())
        return ArrayRecord(raw)
    return ArrayRecord([Array(bytes_to_ndarray(t)) for t in parameters.tensors])


def arrayrecord_to_parameters(record: ArrayRecord) -> Parameters:
    if RAW_TENSOR_TYPE_KEY in record:
        tensor_type = bytes(record[RAW_TENSOR_TYPE_KEY].data).decode()
        keys = sorted((k for k in record if k != RAW_TENSOR_TYPE_KEY), key=int)
        return Parameters([bytes(record[k].data) for k in keys], tensor_type)
    # A received record is not changed in place by anyone: share its memory.
    return Parameters._holding(record.to_numpy_ndarrays())


def _bytes_array(data: bytes) -> Array:
    return Array(np.frombuffer(data, dtype=np.uint8))


def _config(record: RecordDict, key: str) -> dict[str, Any]:
    value = record.get(key)
    if not isinstance(value, ConfigRecord):
        return {}
    return dict(value)


def _status_record(status: Status) -> ConfigRecord:
    return ConfigRecord({"code": int(status.code), "message": status.message})


def _status(record: RecordDict, prefix: str) -> Status:
    raw = _config(record, f"{prefix}.status")
    return Status(Code(int(raw.get("code", 0))), str(raw.get("message", "Success")))


def _with_parameters(prefix: str, parameters: Parameters, config: Config) -> RecordDict:
    return RecordDict(
        {
            f"{prefix}.parameters": parameters_to_arrayrecord(parameters),
            f"{prefix}.config": ConfigRecord(config),
        }
    )


def _parameters(record: RecordDict, key: str) -> Parameters:
    value = record.get(key)
    if not isinstance(value, ArrayRecord):
        return Parameters(tensors=[])
    return arrayrecord_to_parameters(value)


def fitins_to_recorddict(ins: FitIns) -> RecordDict:
    return _with_parameters("fitins", ins.parameters, ins.config)


def recorddict_to_fitins(record: RecordDict) -> FitIns:
    return FitIns(_parameters(record, "fitins.parameters"), _config(record, "fitins.config"))


def evaluateins_to_recorddict(ins: EvaluateIns) -> RecordDict:
    return _with_parameters("evaluateins", ins.parameters, ins.config)


def recorddict_to_evaluateins(record: RecordDict) -> EvaluateIns:
    return EvaluateIns(
        _parameters(record, "evaluateins.parameters"), _config(record, "evaluateins.config")
    )


def fitres_to_recorddict(res: FitRes) -> RecordDict:
    return RecordDict(
        {
            "fitres.parameters": parameters_to_arrayrecord(res.parameters),
            "fitres.num_examples": ConfigRecord({"num_examples": int(res.num_examples)}),
            "fitres.metrics": ConfigRecord(res.metrics),
            "fitres.status": _status_record(res.status),
        }
    )


def recorddict_to_fitres(record: RecordDict) -> FitRes:
    return FitRes(
        status=_status(record, "fitres"),
        parameters=_parameters(record, "fitres.parameters"),
        num_examples=int(_config(record, "fitres.num_examples").get("num_examples", 0)),
        metrics=_config(record, "fitres.metrics"),
    )


def evaluateres_to_recorddict(res: EvaluateRes) -> RecordDict:
    return RecordDict(
        {
            "evaluateres.loss": ConfigRecord({"loss": float(res.loss)}),
            "evaluateres.num_examples": ConfigRecord({"num_examples": int(res.num_examples)}),
            "evaluateres.metrics": ConfigRecord(res.metrics),
            "evaluateres.status": _status_record(res.status),
        }
    )


def recorddict_to_evaluateres(record: RecordDict) -> EvaluateRes:
    return EvaluateRes(
        status=_status(record, "evaluateres"),
        loss=float(_config(record, "evaluateres.loss").get("loss", 0.0)),
        num_examples=int(_config(record, "evaluateres.num_examples").get("num_examples", 0)),
        metrics=_config(record, "evaluateres.metrics"),
    )


def getparametersins_to_recorddict(ins: GetParametersIns) -> RecordDict:
    return RecordDict({"getparametersins.config": ConfigRecord(ins.config)})


def recorddict_to_getparametersins(record: RecordDict) -> GetParametersIns:
    return GetParametersIns(_config(record, "getparametersins.config"))


def getparametersres_to_recorddict(res: GetParametersRes) -> RecordDict:
    return RecordDict(
        {
            "getparametersres.parameters": parameters_to_arrayrecord(res.parameters),
            "getparametersres.status": _status_record(res.status),
        }
    )


def recorddict_to_getparametersres(record: RecordDict) -> GetParametersRes:
    return GetParametersRes(
        status=_status(record, "getparametersres"),
        parameters=_parameters(record, "getparametersres.parameters"),
    )


def getpropertiesins_to_recorddict(ins: GetPropertiesIns) -> RecordDict:
    return RecordDict({"getpropertiesins.config": ConfigRecord(ins.config)})


def recorddict_to_getpropertiesins(record: RecordDict) -> GetPropertiesIns:
    return GetPropertiesIns(_config(record, "getpropertiesins.config"))


def getpropertiesres_to_recorddict(res: GetPropertiesRes) -> RecordDict:
    return RecordDict(
        {
            "getpropertiesres.properties": ConfigRecord(res.properties),
            "getpropertiesres.status": _status_record(res.status),
        }
    )


def recorddict_to_getpropertiesres(record: RecordDict) -> GetPropertiesRes:
    return GetPropertiesRes(
        status=_status(record, "getpropertiesres"),
        properties=_config(record, "getpropertiesres.properties"),
    )
