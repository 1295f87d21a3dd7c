"""Server-side optimizers: the one numerical core of FedAdam, FedYogi, FedAdagrad and FedAvgM.

Both APIs call these (the legacy `stamen.server.strategy` classes on lists of arrays, the
Message-API ones on an ArrayRecord's arrays in key order). Each step treats the FedAvg
aggregate minus the current global model as a pseudo-gradient (Reddi et al., 2020,
https://arxiv.org/abs/2003.00295; Hsu et al., 2019, https://arxiv.org/abs/1909.06335).

The arithmetic runs in float64 a cache-sized block at a time, so a step allocates only
the new model; the optimizer state (moments, momentum) is kept in each array's floating
dtype, as Flower keeps it, and the new model in the model's dtype (integers rounded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from stamen.common.errors import AggregationError

__all__ = ["AdaptiveOptimizer", "MomentumOptimizer"]

Arrays = list[npt.NDArray[Any]]
Variant = Literal["adagrad", "adam", "yogi"]

_BLOCK = 1 << 15
"""Elements per step: the float64 temporaries of a block stay in the CPU cache."""


def _state_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return dtype if dtype.kind in "fc" else np.dtype(np.float64)


def _check_shapes(
    current: Sequence[npt.NDArray[Any]], aggregated: Sequence[npt.NDArray[Any]]
) -> None:
    if len(current) != len(aggregated):
        raise AggregationError(
            f"the aggregated model has {len(aggregated)} arrays but the current global "
            f"model has {len(current)}: the update cannot be computed"
        )
    for index, (old, new) in enumerate(zip(current, aggregated, strict=True)):
        if old.shape != new.shape:
            raise AggregationError(
                f"array {index}: the aggregated model has shape {new.shape} but the current "
                f"global model has {old.shape}: the update cannot be computed"
            )


def _blocks(size: int) -> range:
    return range(0, size, _BLOCK)


def _flat(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """`array` as a flat C-order view (a copy if it is not C-contiguous; only read)."""
    return np.ascontiguousarray(array).reshape(-1)


def _store(values: npt.NDArray[np.float64], out: npt.NDArray[Any]) -> None:
    if out.dtype.kind in "biu":
        values = np.rint(values)
    out[...] = values


@dataclass
class AdaptiveOptimizer:
    """FedOpt's server update, `variant` "adam", "yogi" or "adagrad", with its state.

    m = beta_1 m + (1 - beta_1) d, with d = aggregated - current;
    v = beta_2 v + (1 - beta_2) d^2 (adam), v - (1 - beta_2) d^2 sign(v - d^2) (yogi),
    or v + d^2 (adagrad); new = current + lr m / (sqrt(v) + tau), where lr is eta, and for
    adam eta sqrt(1 - beta_2^(t+1)) / (1 - beta_1^(t+1)) in round t (Flower's bias
    correction).
    """

    variant: Variant
    eta: float
    beta_1: float
    beta_2: float
    tau: float
    m_t: Arrays | None = field(default=None, repr=False)
    v_t: Arrays | None = field(default=None, repr=False)

    def learning_rate(self, server_round: int) -> float:
        if self.variant != "adam":
            return self.eta
        t = server_round + 1.0
        return float(self.eta * np.sqrt(1.0 - self.beta_2**t) / (1.0 - self.beta_1**t))

    def step(
        self,
        current: Sequence[npt.NDArray[Any]],
        aggregated: Sequence[npt.NDArray[Any]],
        server_round: int,
        *,
        in_place: bool = False,
    ) -> Arrays:
        """The new global model; updates the moments in place. `in_place`: write it over
        `aggregated` (arrays the caller owns and no longer needs), not into new arrays."""
        _check_shapes(current, aggregated)
        if (
            not self.m_t
            or not self.v_t
            or [m.shape for m in self.m_t] != [a.shape for a in current]
        ):
            self.m_t = [np.zeros(a.shape, _state_dtype(a.dtype)) for a in current]
            self.v_t = [np.zeros(a.shape, _state_dtype(a.dtype)) for a in current]
        lr = self.learning_rate(server_round)
        result = []
        for old, new, m, v in zip(current, aggregated, self.m_t, self.v_t, strict=True):
            reuse = in_place and new.dtype == old.dtype and new.flags.c_contiguous
            out = new if reuse and new.flags.writeable else np.empty(old.shape, old.dtype)
            self._step_array(_flat(old), _flat(new), m.reshape(-1), v.reshape(-1), lr, out)
            result.append(out)
        return result

    def _step_array(
        self,
        old: npt.NDArray[Any],
        new: npt.NDArray[Any],
        m: npt.NDArray[Any],
        v: npt.NDArray[Any],
        lr: float,
        out: npt.NDArray[Any],
    ) -> None:
        """One array's update, a block at a time in preallocated float64 buffers (the
        same operations, in the same order, as the formulas in the class docstring)."""
        size = min(_BLOCK, old.size)
        x, d, mb, vb, t, u = (np.empty(size) for _ in range(6))
        state = np.empty(size, m.dtype)
        flat_out = out.reshape(-1)
        for start in _blocks(old.size):
            block = slice(start, start + _BLOCK)
            k = min(_BLOCK, old.size - start)
            xs, ds, ms, vs, ts, us, ss = x[:k], d[:k], mb[:k], vb[:k], t[:k], u[:k], state[:k]
            np.copyto(xs, old[block], casting="unsafe")
            np.subtract(new[block], xs, out=ds)
            np.multiply(m[block], self.beta_1, out=ss)  # in the state's dtype, as stored
            np.multiply(ds, 1.0 - self.beta_1, out=ts)
            np.add(ss, ts, out=ms)
            np.multiply(ds, ds, out=ts)  # d^2
            np.copyto(vs, v[block], casting="unsafe")
            self._second_moment(vs, ts, us)
            m[block] = ms
            v[block] = vs
            np.sqrt(vs, out=us)
            np.add(us, self.tau, out=us)
            np.multiply(ms, lr, out=ts)
            np.divide(ts, us, out=ts)
            np.add(xs, ts, out=ts)
            _store(ts, flat_out[block])

    def _second_moment(
        self, v: npt.NDArray[np.float64], d2: npt.NDArray[np.float64], scratch: npt.NDArray[Any]
    ) -> None:
        """v <- the variant's second moment from v and d^2 (d2 and scratch are overwritten)."""
        if self.variant == "adam":
            np.multiply(v, self.beta_2, out=v)
            np.multiply(d2, 1.0 - self.beta_2, out=d2)
            np.add(v, d2, out=v)
        elif self.variant == "yogi":
            np.subtract(v, d2, out=scratch)
            np.sign(scratch, out=scratch)
            np.multiply(d2, 1.0 - self.beta_2, out=d2)
            np.multiply(d2, scratch, out=d2)
            np.subtract(v, d2, out=v)
        else:
            np.add(v, d2, out=v)


@dataclass
class MomentumOptimizer:
    """FedAvgM's server update: SGD with momentum on the pseudo-gradient current - aggregated.

    momentum_vector = pseudo-gradient in the first step, then
    server_momentum * momentum_vector + pseudo-gradient (if server_momentum > 0);
    new = current - server_learning_rate * momentum_vector (or * pseudo-gradient).
    """

    server_learning_rate: float
    server_momentum: float
    momentum_vector: Arrays | None = field(default=None, repr=False)

    def step(
        self, current: Sequence[npt.NDArray[Any]], aggregated: Sequence[npt.NDArray[Any]]
    ) -> Arrays:
        """The new global model; updates the momentum vector in place."""
        _check_shapes(current, aggregated)
        use_momentum = self.server_momentum > 0.0
        first = self.momentum_vector is None or [m.shape for m in self.momentum_vector] != [
            a.shape for a in current
        ]
        if use_momentum and first:
            self.momentum_vector = [np.empty(a.shape, _state_dtype(a.dtype)) for a in current]
        result = []
        for index, (old, new) in enumerate(zip(current, aggregated, strict=True)):
            out = np.empty(old.shape, old.dtype)
            flat_old, flat_new, flat_out = _flat(old), _flat(new), out.reshape(-1)
            momentum = None
            if use_momentum and self.momentum_vector is not None:
                momentum = self.momentum_vector[index].reshape(-1)
            for start in _blocks(old.size):
                block = slice(start, start + _BLOCK)
                x = flat_old[block].astype(np.float64)
                gradient = x - flat_new[block]
                if momentum is not None:
                    if not first:
                        gradient = self.server_momentum * momentum[block] + gradient
                    momentum[block] = gradient
                _store(x - self.server_learning_rate * gradient, flat_out[block])
            result.append(out)
        return result
