"""History: the losses and metrics a run produced, round by round (Flower's shape)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stamen.common.legacy import Scalar

if TYPE_CHECKING:
    from stamen.common.records import ArrayRecord

__all__ = ["History"]

_SERIES = ("losses_distributed", "losses_centralized", "round_times")
_COUNTS = ("failures",)
_METRICS = ("metrics_distributed_fit", "metrics_distributed", "metrics_centralized")


class History:
    """Losses as `[(round, loss)]`; metrics as `{name: [(round, value)]}`; how long each
    round took as `round_times`, `[(round, seconds)]`; how many of a round's replies
    failed (an error, a timeout, a refusal: all phases together) as `failures`,
    `[(round, count)]`. `final_arrays`: the global model after the last round, where the
    loop that made the History knows it (else None)."""

    def __init__(self) -> None:
        self.losses_distributed: list[tuple[int, float]] = []
        self.losses_centralized: list[tuple[int, float]] = []
        self.metrics_distributed_fit: dict[str, list[tuple[int, Scalar]]] = {}
        self.metrics_distributed: dict[str, list[tuple[int, Scalar]]] = {}
        self.metrics_centralized: dict[str, list[tuple[int, Scalar]]] = {}
        self.round_times: list[tuple[int, float]] = []
        self.failures: list[tuple[int, int]] = []
        self.final_arrays: ArrayRecord | None = None

    def add_loss_distributed(self, server_round: int, loss: float) -> None:
        self.losses_distributed.append((server_round, loss))

    def add_loss_centralized(self, server_round: int, loss: float) -> None:
        self.losses_centralized.append((server_round, loss))

    def add_round_time(self, server_round: int, seconds: float) -> None:
        self.round_times.append((server_round, seconds))

    def add_failures(self, server_round: int, count: int) -> None:
        """Count `count` more failed replies in `server_round` (0 records a round without)."""
        if self.failures and self.failures[-1][0] == server_round:
            count += self.failures.pop()[1]
        self.failures.append((server_round, count))

    def add_metrics_distributed_fit(self, server_round: int, metrics: Mapping[str, Scalar]) -> None:
        _add_metrics(self.metrics_distributed_fit, server_round, metrics)

    def add_metrics_distributed(self, server_round: int, metrics: Mapping[str, Scalar]) -> None:
        _add_metrics(self.metrics_distributed, server_round, metrics)

    def add_metrics_centralized(self, server_round: int, metrics: Mapping[str, Scalar]) -> None:
        _add_metrics(self.metrics_centralized, server_round, metrics)

    def to_dict(self) -> dict[str, Any]:
        """Everything but `final_arrays`, as JSON-ready lists: `{"losses_distributed":
        [[round, loss], ...], "metrics_distributed": {name: [[round, value], ...]}, ...}`.
        A bytes metric becomes `{"bytes": hex}`."""
        out: dict[str, Any] = {
            name: [[r, v] for r, v in getattr(self, name)] for name in (*_SERIES, *_COUNTS)
        }
        for name in _METRICS:
            series: dict[str, list[tuple[int, Scalar]]] = getattr(self, name)
            out[name] = {
                key: [[r, _to_json(v)] for r, v in values] for key, values in series.items()
            }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The History `to_dict` described (missing keys stay empty); ValueError when
        `data` is not of that shape."""
        history = cls()
        try:
            for name in _SERIES:
                getattr(history, name).extend((int(r), float(v)) for r, v in data.get(name, ()))
            for name in _COUNTS:
                getattr(history, name).extend((int(r), int(v)) for r, v in data.get(name, ()))
            for name in _METRICS:
                target: dict[str, list[tuple[int, Scalar]]] = getattr(history, name)
                for key, values in dict(data.get(name, {})).items():
                    target[str(key)] = [(int(r), _from_json(v)) for r, v in values]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a History's dict: {exc}") from None
        return history

    def __repr__(self) -> str:
        lines: list[str] = []
        for title, losses in (
            ("loss, distributed", self.losses_distributed),
            ("loss, centralized", self.losses_centralized),
        ):
            if losses:
                lines.append(f"History ({title}):")
                lines.extend(f"\tround {r}: {loss}" for r, loss in losses)
        for title, metrics in (
            ("metrics, distributed, fit", self.metrics_distributed_fit),
            ("metrics, distributed, evaluate", self.metrics_distributed),
            ("metrics, centralized", self.metrics_centralized),
        ):
            if metrics:
                lines.append(f"History ({title}):")
                for name, values in metrics.items():
                    lines.append(f"\t{name}:")
                    lines.extend(f"\t\tround {r}: {value!r}" for r, value in values)
        return "\n".join(lines) + "\n" if lines else "History (empty)\n"


def _add_metrics(
    target: dict[str, list[tuple[int, Scalar]]], server_round: int, metrics: Mapping[str, Scalar]
) -> None:
    for key, value in metrics.items():
        target.setdefault(key, []).append((server_round, value))


def _to_json(value: Scalar) -> Any:
    return {"bytes": value.hex()} if isinstance(value, bytes) else value


def _from_json(value: Any) -> Scalar:
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return bytes.fromhex(value["bytes"])
    if isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"{value!r} is not a metric value")
