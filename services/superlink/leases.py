"""RunLeases: which ServerApp runner drives each run, for how long (sans-IO).

A runner takes a run's lease before it drives the run and renews it well within the
lease's duration (`renew`); another runner asking for a held lease is refused, so two
runners never drive one run. A lease that is not renewed lapses (`lapsed`), and the
SuperLink marks its run failed: a runner that died no longer leaves its run running
forever. Leases live in memory: after a SuperLink restart each running run gets one
lease's time for its runner to come back (`adopt`), taken by the first runner to renew.
Nothing here reads a clock; the caller passes `now` (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

from stamen.common.errors import RunLeaseHeldError

__all__ = ["DEFAULT_RUN_LEASE", "RunLeases"]

DEFAULT_RUN_LEASE = 30.0
"""Seconds a runner's lease lasts after each renewal (runners renew every third of it)."""


@dataclass(slots=True)
class _Lease:
    holder: str  # "" for a lease adopted at start: the first runner to renew takes it
    expires: float


class RunLeases:
    """The leases of the running runs that have one."""

    __slots__ = ("_leases", "duration")

    def __init__(self, duration: float = DEFAULT_RUN_LEASE) -> None:
        if not duration > 0:
            raise ValueError(f"a lease must last more than 0s, got {duration}")
        self.duration = duration
        self._leases: dict[int, _Lease] = {}

    def renew(self, run_id: int, holder: str, now: float) -> float:
        """Give `holder` the lease (new, its own, adopted or lapsed); the seconds it lasts.
        RunLeaseHeldError when another holder's lease is still running."""
        lease = self._leases.get(run_id)
        if lease is not None and lease.holder not in ("", holder) and lease.expires > now:
            raise RunLeaseHeldError(run_id, lease.expires - now)
        self._leases[run_id] = _Lease(holder, now + self.duration)
        return self.duration

    def adopt(self, run_id: int, now: float) -> None:
        """A running run found at start: its runner has one lease's time to renew."""
        self._leases.setdefault(run_id, _Lease("", now + self.duration))

    def release(self, run_id: int) -> None:
        """The run finished: its lease goes."""
        self._leases.pop(run_id, None)

    def lapsed(self, now: float) -> list[int]:
        """The runs whose lease ran out, forgotten here."""
        gone = [run_id for run_id, lease in self._leases.items() if lease.expires <= now]
        for run_id in gone:
            del self._leases[run_id]
        return gone
