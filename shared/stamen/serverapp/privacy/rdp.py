"""Renyi differential privacy of the sampled Gaussian mechanism, and its (epsilon, delta).

The numbers Google's dp-accounting computes (the backend Flower's `RdpAccountant` wraps),
derived from the same papers, in plain Python:
- Poisson sampling, add-or-remove-one neighbours: Mironov, Talwar, Zhang, "Renyi
  Differential Privacy of the Sampled Gaussian Mechanism" (arXiv:1908.10530), integer
  orders in closed form, fractional ones by the two-sided series of its Sec. 3.3.
- Fixed-size sampling without replacement, replace-one neighbours: Wang, Balle,
  Kasiviswanathan, "Subsampled Renyi Differential Privacy and Analytical Moments
  Accountant" (AISTATS 2019), Theorem 27; fractional orders interpolate the CGF.
- RDP -> (epsilon, delta): Canonne, Kamath, Steinke (arXiv:2004.00010), Proposition 12,
  with the KL bound delta <= sqrt(1 - exp(-rdp)) where it is better.
Everything is in log space: the terms overflow a float long before the result does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

__all__ = [
    "DEFAULT_ORDERS",
    "compute_delta",
    "compute_epsilon",
    "rdp_gaussian",
    "rdp_poisson_gaussian",
    "rdp_without_replacement_gaussian",
]

logger = logging.getLogger(__name__)

DEFAULT_ORDERS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *(float(x) for x in range(11, 64)),
    128.0,
    256.0,
    512.0,
    1024.0,
)
"""The Renyi orders dp-accounting (and so Flower) evaluates by default."""

_MAX_FRACTIONAL_TERMS = 1000
_MAX_EXACT_WOR_ORDER = 256  # above it, Theorem 27's bound with the simpler term
_INF = math.inf


def rdp_gaussian(noise_multiplier: float, orders: Sequence[float]) -> list[float]:
    """RDP of one release of the Gaussian mechanism (no sampling): alpha / (2 sigma^2)."""
    return rdp_poisson_gaussian(1.0, noise_multiplier, orders)


def rdp_poisson_gaussian(q: float, noise_multiplier: float, orders: Sequence[float]) -> list[float]:
    """RDP at each order of one Poisson-sampled Gaussian release with sampling rate `q`."""
    if not 0 <= q <= 1:
        raise ValueError(f"sampling rate must be in [0, 1], got {q}")
    if noise_multiplier < 0:
        raise ValueError(f"noise multiplier must be non-negative, got {noise_multiplier}")
    return [_poisson_one_order(q, noise_multiplier, order) for order in orders]


def _poisson_one_order(q: float, sigma: float, alpha: float) -> float:
    if q == 0:
        return 0.0
    if math.isinf(alpha) or sigma == 0:
        return _INF
    if q == 1.0:
        return alpha / (2 * sigma**2)
    if float(alpha).is_integer():
        return _log_a_int(q, sigma, int(alpha)) / (alpha - 1)
    return _log_a_frac(q, sigma, alpha) / (alpha - 1)


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    """log A_alpha for an integer order: a binomial sum over how often the record is in."""
    log_a = -_INF
    log1mq = math.log1p(-q)
    for i in range(alpha + 1):
        log_coef = _log_comb(alpha, i) + i * math.log(q) + (alpha - i) * log1mq
        log_a = _log_add(log_a, log_coef + (i * i - i) / (2 * sigma**2))
    return log_a


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    """log A_alpha for a fractional order: the integrals below and above z0 as series
    that stop once both are decreasing and negligible; inf (order unused) otherwise."""
    log_a0 = log_a1 = -_INF
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    log1mq = math.log1p(-q)
    last_s0 = last_s1 = -_INF
    for i in range(_MAX_FRACTIONAL_TERMS):
        log_coef = _log_comb(alpha, i)
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * log1mq
        log_t1 = log_coef + j * math.log(q) + i * log1mq
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma**2) + log_e1
        log_a0 = _log_add(log_a0, log_s0)
        log_a1 = _log_add(log_a1, log_s1)
        total = _log_add(log_a0, log_a1)
        if log_s0 < last_s0 and log_s1 < last_s1 and max(log_s0, log_s1) < total - 30:
            return total
        last_s0, last_s1 = log_s0, log_s1
    logger.debug(
        "RDP at order %s (q=%s, sigma=%s) did not converge in %d terms: order left out",
        alpha,
        q,
        sigma,
        _MAX_FRACTIONAL_TERMS,
    )
    return _INF


def rdp_without_replacement_gaussian(
    q: float, noise_multiplier: float, orders: Sequence[float]
) -> list[float]:
    """RDP at each order of one Gaussian release on a fixed-size sample without
    replacement, `q` = sample size / population size (replace-one neighbours)."""
    if not 0 <= q <= 1:
        raise ValueError(f"sampling rate must be in [0, 1], got {q}")
    return [_wor_one_order(q, noise_multiplier, order) for order in orders]


def _wor_one_order(q: float, sigma: float, alpha: float) -> float:
    if alpha < 1:
        raise ValueError(f"Renyi order must be at least 1, got {alpha}")
    if q == 0:
        return 0.0
    if q == 1.0:
        return alpha / (2 * sigma**2)
    if math.isinf(alpha):
        return _INF
    if float(alpha).is_integer():
        return _wor_log_a(q, sigma, int(alpha)) / (alpha - 1)
    low, high = math.floor(alpha), math.ceil(alpha)
    t = alpha - low
    return ((1 - t) * _wor_log_a(q, sigma, low) + t * _wor_log_a(q, sigma, high)) / (alpha - 1)


def _wor_log_a(q: float, sigma: float, alpha: int) -> float:
    """(alpha - 1) times the RDP bound of Theorem 27 at an integer order."""
    if alpha == 1:
        return 0.0

    def cgf(x: float) -> float:  # (x) * rdp_gaussian(x + 1)
        return x * 1.0 * (x + 1) / (2.0 * sigma**2)

    def rdp(x: float) -> float:
        return 1.0 * x / (2.0 * sigma**2)

    log_a = 0.0
    log_f2m1 = rdp(2.0) + math.log1p(-math.exp(-rdp(2.0)))
    second = (
        2 * math.log(q) + _log_comb(alpha, 2) + min(math.log(4) + log_f2m1, rdp(2.0) + math.log(2))
    )
    deltas = _forward_differences(cgf, alpha) if alpha <= _MAX_EXACT_WOR_ORDER else []
    for i in range(2, alpha + 1):
        if i == 2:
            term = second
        elif deltas:
            delta_lo = deltas[int(2 * math.floor(i / 2.0)) - 1]
            delta_hi = deltas[int(2 * math.ceil(i / 2.0)) - 1]
            term = min(math.log(4) + 0.5 * (delta_lo + delta_hi), math.log(2) + cgf(i - 1))
            term += i * math.log(q) + _log_comb(alpha, i)
        else:
            term = math.log(2) + cgf(i - 1) + i * math.log(q) + _log_comb(alpha, i)
        log_a = _log_add(log_a, term)
    return log_a


def _forward_differences(fun: Callable[[float], float], n: int) -> list[float]:
    """log |k-th forward difference of exp(fun) at 0| for k = 0..n+1 (Theorem 27's
    Delta terms), by differencing in log space with signs kept aside."""
    values = [0.0] + [fun(float(i - 1)) for i in range(1, n + 3)]
    signs = [True] * (n + 3)
    deltas = [0.0] * (n + 2)
    for i in range(n + 2):
        for j in range(n + 2 - i):
            if signs[j] == signs[j + 1]:
                signs[j], values[j] = _log_sub_sign(values[j + 1], values[j])
                if not signs[j + 1]:
                    signs[j] = not signs[j]
            else:
                values[j] = _log_add(values[j], values[j + 1])
                signs[j] = signs[j + 1]
        deltas[i] = values[0]
    return deltas


def compute_epsilon(
    orders: Sequence[float], rdp: Sequence[float], delta: float
) -> tuple[float, float]:
    """The smallest epsilon over the orders at `delta`, and the order that gives it."""
    if delta < 0:
        raise ValueError(f"delta cannot be negative, got {delta}")
    if delta == 0:
        return (0.0, 0.0) if all(r == 0 for r in rdp) else (_INF, 0.0)
    _check_lengths(orders, rdp)
    eps: list[float] = []
    for a, r in zip(orders, rdp, strict=True):
        _check_order(a)
        if r < 0:
            logger.warning("negative Renyi divergence %s (numerical instability): epsilon 0", r)
            epsilon = 0.0
        elif delta**2 + math.expm1(-r) > 0:
            epsilon = 0.0  # the KL bound already gives delta
        elif a > 1.01:  # the bound is unstable as alpha -> 1
            epsilon = r + math.log1p(-1 / a) - math.log(delta * a) / (a - 1)
        else:
            epsilon = _INF
        eps.append(epsilon)
    best = _argmin(eps)
    return max(0.0, eps[best]), float(orders[best])


def compute_delta(
    orders: Sequence[float], rdp: Sequence[float], epsilon: float
) -> tuple[float, float]:
    """The smallest delta over the orders at `epsilon`, and the order that gives it."""
    if epsilon < 0:
        raise ValueError(f"epsilon cannot be negative, got {epsilon}")
    _check_lengths(orders, rdp)
    log_deltas: list[float] = []
    for a, r in zip(orders, rdp, strict=True):
        _check_order(a)
        if r < 0:
            logger.warning("negative Renyi divergence %s (numerical instability): delta 0", r)
            log_delta = -_INF
        elif r == 0:
            log_delta = -_INF
        else:
            log_delta = 0.5 * math.log1p(-math.exp(-r))  # the KL bound
        if a > 1.01:
            bound = (a - 1) * (r - epsilon + math.log1p(-1 / a)) - math.log(a)
            log_delta = min(log_delta, bound)
        log_deltas.append(log_delta)
    best = _argmin(log_deltas)
    return min(math.exp(log_deltas[best]), 1.0), float(orders[best])


def _check_lengths(orders: Sequence[float], rdp: Sequence[float]) -> None:
    if len(orders) != len(rdp):
        raise ValueError(f"{len(orders)} orders but {len(rdp)} RDP values")


def _check_order(order: float) -> None:
    if order < 1:
        raise ValueError(f"Renyi order must be at least 1, got {order}")


def _argmin(values: list[float]) -> int:
    """The first index of the smallest value (numpy's argmin; nan counts as smallest)."""
    best = 0
    for index, value in enumerate(values):
        if math.isnan(value):
            return index
        if value < values[best]:
            best = index
    return best


def _log_add(log_x: float, log_y: float) -> float:
    """log(exp(log_x) + exp(log_y))."""
    low, high = min(log_x, log_y), max(log_x, log_y)
    if low == -_INF:
        return high
    return math.log1p(math.exp(low - high)) + high


def _log_sub_sign(log_x: float, log_y: float) -> tuple[bool, float]:
    """log |exp(log_x) - exp(log_y)| and whether the difference is non-negative."""
    if log_x > log_y:
        return True, log_x + math.log1p(-math.exp(log_y - log_x))
    if log_x < log_y:
        return False, log_y + math.log1p(-math.exp(log_x - log_y))
    return True, -_INF


def _log_comb(n: float, k: float) -> float:
    """log |binomial(n, k)| for real n (lgamma is log |Gamma|, as scipy's gammaln)."""
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _log_erfc(x: float) -> float:
    """log(erfc(x)), accurate where erfc(x) underflows (Laurent series at infinity)."""
    value = math.erfc(x)
    if value > 0.0:
        return math.log(value)
    return (
        -math.log(math.pi) / 2
        - math.log(x)
        - x**2
        - 0.5 * x**-2
        + 0.625 * x**-4
        - 37.0 / 24.0 * x**-6
        + 353.0 / 64.0 * x**-8
    )
