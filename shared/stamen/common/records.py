"""Records: the typed content of a Message.

`Array` holds one n-dimensional array as dtype + shape + C-order bytes; `ArrayRecord`,
`MetricRecord` and `ConfigRecord` are ordered, validated mappings; `RecordDict` maps
names to records. Arrays wrap numpy memory without copying where numpy allows, so a
model is copied only when it must be (non-contiguous input, a CUDA tensor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

__all__ = [
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "ConfigValue",
    "MetricRecord",
    "MetricValue",
    "RecordDict",
    "UserConfig",
    "UserConfigValue",
]

Buffer: TypeAlias = bytes | bytearray | memoryview
MetricScalar: TypeAlias = int | float
MetricValue: TypeAlias = int | float | list[int] | list[float]
ConfigScalar: TypeAlias = int | float | str | bytes | bool
ConfigValue: TypeAlias = (
    ConfigScalar | list[int] | list[float] | list[str] | list[bytes] | list[bool]
)
UserConfigValue: TypeAlias = bool | int | float | str
UserConfig: TypeAlias = dict[str, UserConfigValue]


class Array:
    """One array: `dtype` (numpy dtype string), `shape`, and its C-order bytes in `data`.

    Build it from a numpy array or torch tensor (`Array(x)`), or from parts
    (`Array(dtype="<f4", shape=(2, 3), data=raw)`).
    """

    __slots__ = ("_array", "data", "dtype", "shape")

    @overload
    def __init__(self, array: Any, /) -> None: ...
    @overload
    def __init__(
        self, array: None = None, /, *, dtype: str, shape: Iterable[int], data: Buffer
    ) -> None: ...

    def __init__(
        self,
        array: Any = None,
        /,
        *,
        dtype: str | None = None,
        shape: Iterable[int] | None = None,
        data: Buffer | None = None,
    ) -> None:
        self._array: npt.NDArray[Any] | None
        if array is not None:
            if dtype is not None or shape is not None or data is not None:
                raise TypeError("Array takes either an array or dtype/shape/data, not both")
            nd = _to_contiguous_ndarray(array)
            self.dtype: str = nd.dtype.str
            self.shape: tuple[int, ...] = tuple(int(s) for s in nd.shape)
            self.data: Buffer = memoryview(nd.reshape(-1).view(np.uint8).data)
            self._array = nd
            return
        if dtype is None or shape is None or data is None:
            raise TypeError("Array needs an array, or all of dtype, shape and data")
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
            and memoryview(self.data).cast("B") == memoryview(other.data).cast("B")
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # memoryviews do not pickle: send the bytes (state crosses to worker processes).
        return (_restore_array, (self.dtype, self.shape, bytes(self.data)))

    def __repr__(self) -> str:
        return f"Array(dtype={self.dtype!r}, shape={self.shape}, nbytes={self.nbytes})"


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

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, V] = {}
        if items is not None:
            for key, value in items.items():
                self[key] = value

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
    """

    __slots__ = ()

    def __init__(self, arrays: Mapping[str, Any] | Iterable[Any] | None = None) -> None:
        if arrays is None or isinstance(arrays, Mapping):
            super().__init__(arrays)
        else:
            super().__init__({str(i): a for i, a in enumerate(arrays)})

    def _check(self, key: str, value: Any) -> Array:
        if isinstance(value, Array):
            return value
        try:
            return Array(value)
        except TypeError as exc:
            raise TypeError(f"ArrayRecord[{key!r}]: {exc}") from None

    def to_numpy_ndarrays(self) -> list[npt.NDArray[Any]]:
        return [a.numpy() for a in self._data.values()]

    def to_torch_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: a.torch() for k, a in self._data.items()}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._data.values())


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


Record: TypeAlias = ArrayRecord | MetricRecord | ConfigRecord


class RecordDict(_Record[Record]):
    """Named records: what a Message carries and what `Context.state` keeps."""

    __slots__ = ()

    def _check(self, key: str, value: Any) -> Record:
        if isinstance(value, ArrayRecord | MetricRecord | ConfigRecord):
            return value
        raise TypeError(
            f"RecordDict[{key!r}]: expected ArrayRecord, MetricRecord or ConfigRecord, "
            f"got {type(value).__name__}"
        )

    @property
    def array_records(self) -> dict[str, ArrayRecord]:
        return {k: v for k, v in self._data.items() if isinstance(v, ArrayRecord)}

    @property
    def metric_records(self) -> dict[str, MetricRecord]:
        return {k: v for k, v in self._data.items() if isinstance(v, MetricRecord)}

    @property
    def config_records(self) -> dict[str, ConfigRecord]:
        return {k: v for k, v in self._data.items() if isinstance(v, ConfigRecord)}
