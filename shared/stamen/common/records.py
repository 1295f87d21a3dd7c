"""Records: the typed content of a Message.

`Array` holds one n-dimensional array as dtype + shape + C-order bytes; `ArrayRecord`,
`MetricRecord` and `ConfigRecord` are ordered, validated mappings; `RecordDict` maps
names to records. Arrays wrap numpy memory without copying where numpy allows, so a
model is copied only when it must be (non-contiguous input, a CUDA tensor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Self, TypeAlias, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt

from .buffers import Buffer, byte_view

if TYPE_CHECKING:
    import torch

__all__ = [
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "ConfigScalar",
    "ConfigScalarList",
    "ConfigValue",
    "ConfigsRecord",
    "MetricRecord",
    "MetricScalar",
    "MetricScalarList",
    "MetricValue",
    "MetricsRecord",
    "ParametersRecord",
    "RecordDict",
    "RecordSet",
    "UserConfig",
    "UserConfigValue",
    "array_from_numpy",
]

MetricScalar: TypeAlias = int | float
MetricScalarList: TypeAlias = list[int] | list[float]
MetricValue: TypeAlias = MetricScalar | MetricScalarList
ConfigScalar: TypeAlias = int | float | str | bytes | bool
ConfigScalarList: TypeAlias = list[int] | list[float] | list[str] | list[bytes] | list[bool]
ConfigValue: TypeAlias = ConfigScalar | ConfigScalarList
UserConfigValue: TypeAlias = bool | int | float | str
UserConfig: TypeAlias = dict[str, UserConfigValue]


class Array:
    """One array: `dtype` (numpy dtype string), `shape`, and its C-order bytes in `data`.

    Build it from a numpy array or torch tensor (`Array(x)`, or Flower's `ndarray=`,
    `torch_tensor=`), or from parts: `Array(dtype="<f4", shape=(2, 3), data=raw)` with raw
    C-order bytes, or Flower's `Array(dtype, shape, "numpy.ndarray", npy_bytes)`.
    """

    __slots__ = ("_array", "data", "dtype", "shape")

    dtype: str
    shape: tuple[int, ...]
    data: Buffer
    _array: npt.NDArray[Any] | None

    @overload
    def __init__(self, array: Any, /) -> None: ...
    @overload
    def __init__(self, dtype: str, shape: Iterable[int], stype: str, data: Buffer, /) -> None: ...
    @overload
    def __init__(
        self, *, dtype: str, shape: Iterable[int], data: Buffer, stype: str | None = None
    ) -> None: ...
    @overload
    def __init__(self, *, ndarray: Any) -> None: ...
    @overload
    def __init__(self, *, torch_tensor: Any) -> None: ...

    def __init__(
        self,
        *args: Any,
        dtype: str | None = None,
        shape: Iterable[int] | None = None,
        stype: str | None = None,
        data: Buffer | None = None,
        ndarray: Any = None,
        torch_tensor: Any = None,
    ) -> None:
        parts = (dtype, shape, stype, data)
        sources = [a for a in (ndarray, torch_tensor) if a is not None]
        if len(args) == 4 and not sources and all(p is None for p in parts):
            dtype, shape, stype, data = args
        elif len(args) == 1 and not sources:
            sources = list(args)
        elif args:
            raise TypeError(_ARRAY_FORMS)
        if sources:
            if len(sources) > 1 or any(p is not None for p in parts):
                raise TypeError(_ARRAY_FORMS)
            self._set_array(_to_contiguous_ndarray(sources[0]))
            return
        if dtype is None or shape is None or data is None:
            raise TypeError(_ARRAY_FORMS)
        if stype == _NPY_STYPE:
            self._set_array(_npy_array(dtype, tuple(shape), data))
            return
        if stype is not None:
            raise ValueError(
                f"Array stype {stype!r} is not supported: give raw C-order bytes without "
                f"stype, or .npy bytes with stype={_NPY_STYPE!r}"
            )
        np_dtype = _check_dtype(np.dtype(dtype))
        self.dtype = np_dtype.str
        self.shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in self.shape):
            raise ValueError(f"Array shape {self.shape} has a negative dimension")
        expected = math.prod(self.shape) * np_dtype.itemsize
        size = memoryview(data).nbytes
        if size != expected:
            raise ValueError(
                f"Array data has {size} bytes; dtype {self.dtype} and shape {self.shape} "
                f"need {expected}"
            )
        self.data = data
        self._array = None

    def _set_array(self, nd: npt.NDArray[Any]) -> None:
        self.dtype = nd.dtype.str
        self.shape = tuple(int(s) for s in nd.shape)
        self.data = memoryview(nd.reshape(-1).view(np.uint8).data)
        self._array = nd

    @classmethod
    def from_numpy_ndarray(cls, ndarray: npt.NDArray[Any]) -> Array:
        return cls(ndarray=ndarray)

    @classmethod
    def from_torch_tensor(cls, tensor: torch.Tensor) -> Array:
        return cls(torch_tensor=tensor)

    @property
    def nbytes(self) -> int:
        return memoryview(self.data).nbytes

    def numpy(self) -> npt.NDArray[Any]:
        """The array as numpy, sharing memory with `data` (read-only if `data` is)."""
        if self._array is not None:
            return self._array
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.shape)

    def torch(self) -> torch.Tensor:
        """The array as a CPU torch tensor (copied only if the buffer is read-only)."""
        import torch

        nd = self.numpy()
        if not nd.flags.writeable:
            nd = nd.copy()
        return torch.from_numpy(nd)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Array):
            return NotImplemented
        return (
            self.dtype == other.dtype
            and self.shape == other.shape
            and byte_view(self.data) == byte_view(other.data)
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # memoryviews do not pickle: send the bytes (state crosses to worker processes).
        return (_restore_array, (self.dtype, self.shape, bytes(self.data)))

    def __repr__(self) -> str:
        return f"Array(dtype={self.dtype!r}, shape={self.shape}, nbytes={self.nbytes})"


_NPY_STYPE = "numpy.ndarray"
_ARRAY_FORMS = (
    "Array needs an array (numpy or torch: positionally, or ndarray=/torch_tensor=) "
    "or all of dtype, shape and data (raw C-order bytes; or .npy bytes with "
    f"stype={_NPY_STYPE!r}), not both"
)


def _npy_array(dtype: str, shape: tuple[int, ...], data: Buffer) -> npt.NDArray[Any]:
    """The array in Flower's serialization: .npy bytes, read without pickle."""
    import io

    array: npt.NDArray[Any] = np.load(io.BytesIO(bytes(data)), allow_pickle=False)
    if tuple(array.shape) != tuple(int(s) for s in shape):
        raise ValueError(f"Array .npy data has shape {array.shape}, not {tuple(shape)}")
    if np.dtype(dtype) != array.dtype:
        raise ValueError(f"Array .npy data has dtype {array.dtype}, not {dtype}")
    return np.ascontiguousarray(array) if array.ndim else array


def _restore_array(dtype: str, shape: tuple[int, ...], data: bytes) -> Array:
    return Array(dtype=dtype, shape=shape, data=data)


def _check_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    if dtype.hasobject or dtype.kind in "OVUSMm" or dtype.fields is not None:
        raise TypeError(
            f"arrays of dtype {dtype} cannot be sent: use bool, integer, float or complex "
            "arrays (object and ragged arrays have no fixed byte layout)"
        )
    return dtype


def _to_contiguous_ndarray(array: Any) -> npt.NDArray[Any]:
    """A C-contiguous numpy array for `array` (numpy or torch), copying only if needed."""
    if type(array).__module__.startswith("torch"):
        tensor = array.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            raise TypeError("bfloat16 tensors have no numpy dtype: convert with .float() first")
        array = tensor.numpy()
    if not isinstance(array, np.ndarray):
        if isinstance(array, np.generic):
            array = np.asarray(array)
        else:
            raise TypeError(
                f"Array needs a numpy array or torch tensor, got {type(array).__name__}"
            )
    _check_dtype(array.dtype)
    # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
    nd = np.asarray(array)
    return nd if nd.flags.c_contiguous else nd.copy(order="C")


V = TypeVar("V")


class _Record(MutableMapping[str, V]):
    """An ordered mapping whose keys are strings and whose values pass `_check`."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[str, Any] | None = None, keep_input: bool = True) -> None:
        self._data: dict[str, V] = {}
        if items is not None:
            for key, value in items.items():
                self[key] = value
            if not keep_input and isinstance(items, MutableMapping):
                items.clear()  # Flower's keep_input=False: the caller gives its copy up

    def copy(self) -> Self:
        """A shallow copy: a new record holding the same values."""
        new = type(self).__new__(type(self))
        new._data = dict(self._data)
        return new

    def _check(self, key: str, value: Any) -> V:
        raise NotImplementedError

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"{type(self).__name__} keys must be str, got {type(key).__name__}")
        self._data[key] = self._check(key, value)

    def __getitem__(self, key: str) -> V:
        return self._data[key]

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return list(self._data.items()) == list(other._data.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


class ArrayRecord(_Record[Array]):
    """Named arrays, in order: a model's parameters.

    `ArrayRecord([w, b])` keys a list of arrays "0", "1", ...; `ArrayRecord(state_dict)`
    keeps a torch state_dict's names; values may be `Array`, numpy arrays or tensors.
    Flower's keywords (`numpy_ndarrays=`, `torch_state_dict=`, `array_dict=`) say which.
    `keep_input=False` empties a given dict or list as it is taken over.
    """

    __slots__ = ()

    def __init__(
        self,
        *args: Mapping[str, Any] | Iterable[Any],
        numpy_ndarrays: Iterable[Any] | None = None,
        torch_state_dict: Mapping[str, Any] | None = None,
        array_dict: Mapping[str, Any] | None = None,
        keep_input: bool = True,
    ) -> None:
        given = [a for a in (*args, numpy_ndarrays, torch_state_dict, array_dict) if a is not None]
        if len(args) > 1 or len(given) > 1:
            raise TypeError(
                "ArrayRecord takes one source: a list of arrays, a torch state_dict, or a "
                "dict of Array (positionally or as numpy_ndarrays=, torch_state_dict=, "
                "array_dict=)"
            )
        arrays = given[0] if given else None
        if arrays is None or isinstance(arrays, Mapping):
            super().__init__(arrays, keep_input)
        else:
            super().__init__({str(i): a for i, a in enumerate(arrays)})
            if not keep_input and isinstance(arrays, list):
                arrays.clear()

    @classmethod
    def from_numpy_ndarrays(cls, ndarrays: Iterable[Any], *, keep_input: bool = True) -> Self:
        return cls(numpy_ndarrays=ndarrays, keep_input=keep_input)

    @classmethod
    def from_torch_state_dict(
        cls, state_dict: Mapping[str, Any], *, keep_input: bool = True
    ) -> Self:
        return cls(torch_state_dict=state_dict, keep_input=keep_input)

    @classmethod
    def from_array_dict(cls, array_dict: Mapping[str, Any], *, keep_input: bool = True) -> Self:
        return cls(array_dict=array_dict, keep_input=keep_input)

    def _check(self, key: str, value: Any) -> Array:
        if isinstance(value, Array):
            return value
        try:
            return Array(value)
        except TypeError as exc:
            raise TypeError(f"ArrayRecord[{key!r}]: {exc}") from None

    def to_numpy_ndarrays(self, *, keep_input: bool = True) -> list[npt.NDArray[Any]]:
        """The arrays, in order; `keep_input=False` empties this record."""
        arrays = [a.numpy() for a in self._data.values()]
        if not keep_input:
            self._data.clear()
        return arrays

    def to_torch_state_dict(self, *, keep_input: bool = True) -> dict[str, torch.Tensor]:
        """The arrays as CPU tensors by name; `keep_input=False` empties this record."""
        tensors = {k: a.torch() for k, a in self._data.items()}
        if not keep_input:
            self._data.clear()
        return tensors

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._data.values())

    def count_bytes(self) -> int:
        """Bytes held: the arrays' data plus the keys (Flower counts both)."""
        return self.nbytes + sum(len(k) for k in self._data)


def _metric_scalar(value: Any) -> MetricScalar | None:
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    return None


class MetricRecord(_Record[MetricValue]):
    """Named numbers (int, float, or lists of one of them): losses, accuracies, counts."""

    __slots__ = ()

    def __init__(
        self, metric_dict: Mapping[str, Any] | None = None, keep_input: bool = True
    ) -> None:
        super().__init__(metric_dict, keep_input)

    def count_bytes(self) -> int:
        """Bytes as Flower counts them: 8 per number (64-bit on the wire), plus the keys."""
        return sum(8 * (len(v) if isinstance(v, list) else 1) + len(k) for k, v in self.items())

    def _check(self, key: str, value: Any) -> MetricValue:
        scalar = _metric_scalar(value)
        if scalar is not None:
            return scalar
        if isinstance(value, list | tuple):
            items = [_metric_scalar(v) for v in value]
            kinds = {type(v) for v in items}
            if all(v is not None for v in items) and len(kinds) <= 1:
                return cast(MetricValue, items)
        raise TypeError(
            f"MetricRecord[{key!r}]: unsupported value {value!r} of type "
            f"{type(value).__name__}; allowed: int, float, list[int], list[float]"
        )


_CONFIG_SCALARS = (bool, int, float, str, bytes)


def _config_scalar(value: Any) -> ConfigScalar | None:
    if isinstance(value, _CONFIG_SCALARS):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return None


class ConfigRecord(_Record[ConfigValue]):
    """Named settings: int, float, str, bytes, bool, or a list of one of those."""

    __slots__ = ()

    def __init__(
        self, config_dict: Mapping[str, Any] | None = None, keep_input: bool = True
    ) -> None:
        super().__init__(config_dict, keep_input)

    def count_bytes(self) -> int:
        """Bytes as Flower counts them: 1 per bool, 8 per number, the length of a str or
        bytes, plus the keys."""
        return sum(_config_bytes(v) + len(k) for k, v in self.items())

    def _check(self, key: str, value: Any) -> ConfigValue:
        scalar = _config_scalar(value)
        if scalar is not None:
            return scalar
        if isinstance(value, list | tuple):
            items = [_config_scalar(v) for v in value]
            kinds = {type(v) for v in items}
            if all(v is not None for v in items) and len(kinds) <= 1:
                return cast(ConfigValue, items)
        raise TypeError(
            f"ConfigRecord[{key!r}]: unsupported value {value!r} of type "
            f"{type(value).__name__}; allowed: int, float, str, bytes, bool, or a list of one"
        )


def _config_bytes(value: ConfigValue) -> int:
    items = value if isinstance(value, list) else [value]
    return sum(
        1 if isinstance(v, bool) else len(v) if isinstance(v, str | bytes) else 8 for v in items
    )


Record: TypeAlias = ArrayRecord | MetricRecord | ConfigRecord
R = TypeVar("R", ArrayRecord, MetricRecord, ConfigRecord)


class RecordDict(_Record[Record]):
    """Named records: what a Message carries and what `Context.state` keeps.

    `array_records`, `metric_records` and `config_records` are live views of one kind:
    `content.array_records["model"] = record` stores it in this RecordDict.
    """

    __slots__ = ()

    def __init__(
        self,
        records: Mapping[str, Record] | None = None,
        *,
        parameters_records: Mapping[str, ArrayRecord] | None = None,
        metrics_records: Mapping[str, MetricRecord] | None = None,
        configs_records: Mapping[str, ConfigRecord] | None = None,
    ) -> None:
        super().__init__(records)
        # Flower's deprecated keywords, one per kind of record.
        for group in (parameters_records, metrics_records, configs_records):
            for key, value in (group or {}).items():
                self[key] = value

    def _check(self, key: str, value: Any) -> Record:
        if isinstance(value, ArrayRecord | MetricRecord | ConfigRecord):
            return value
        raise TypeError(
            f"RecordDict[{key!r}]: expected ArrayRecord, MetricRecord or ConfigRecord, "
            f"got {type(value).__name__}"
        )

    @property
    def array_records(self) -> MutableMapping[str, ArrayRecord]:
        return _RecordView(self, ArrayRecord)

    @property
    def metric_records(self) -> MutableMapping[str, MetricRecord]:
        return _RecordView(self, MetricRecord)

    @property
    def config_records(self) -> MutableMapping[str, ConfigRecord]:
        return _RecordView(self, ConfigRecord)

    # Flower's deprecated names for the three views.
    parameters_records = array_records
    metrics_records = metric_records
    configs_records = config_records


class _RecordView(MutableMapping[str, R]):
    """The records of one kind in a RecordDict; reads and writes go to the RecordDict."""

    __slots__ = ("_kind", "_owner")

    def __init__(self, owner: RecordDict, kind: type[R]) -> None:
        self._owner = owner
        self._kind: type[R] = kind

    def __getitem__(self, key: str) -> R:
        value = self._owner[key]
        if not isinstance(value, self._kind):
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: R) -> None:
        if not isinstance(value, self._kind):
            raise TypeError(
                f"{self._kind.__name__} view [{key!r}]: expected {self._kind.__name__}, "
                f"got {type(value).__name__}"
            )
        self._owner[key] = value

    def __delitem__(self, key: str) -> None:
        self[key]
        del self._owner[key]

    def __iter__(self) -> Iterator[str]:
        return (k for k, v in self._owner.items() if isinstance(v, self._kind))

    def __len__(self) -> int:
        return sum(1 for v in self._owner.values() if isinstance(v, self._kind))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(dict(self.items()))


def array_from_numpy(ndarray: npt.NDArray[Any]) -> Array:
    """Flower's deprecated spelling of `Array(ndarray)`."""
    return Array(ndarray)


# Flower's deprecated names for the records, still found in published apps.
ParametersRecord = ArrayRecord
MetricsRecord = MetricRecord
ConfigsRecord = ConfigRecord
RecordSet = RecordDict
