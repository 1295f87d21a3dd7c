"""Deliveries: instructions handed to their node on a lease, until the node answers them.

A PullMessages response can be lost on its way (a dropped connection, a node that timed
out the call): had handing it out been final, the instruction would wait for its TTL with
nobody working on it. So handing out is only a lease. The node's reply is the
acknowledgement (an answered instruction is never handed out again); one that is still
unanswered when its lease lapses is handed out again on the node's next pull. A node
pulls only with nothing in hand (it answers what it got, then pulls), so an unanswered
instruction on a later pull is one it never received; the lease only keeps a node whose
reply was refused from being handed the same instruction in a tight loop (the node skips
an instruction it answered already). Leases live in memory: after a restart every
unanswered instruction is handed out again. Nothing here reads a clock; callers pass
`now` (monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DEFAULT_DELIVERY_LEASE", "Deliveries"]

DEFAULT_DELIVERY_LEASE = 10.0
"""Seconds before an instruction handed out but not answered is handed out again."""


class Deliveries:
    """When each unanswered instruction was last handed to its node."""

    __slots__ = ("_handed", "lease")

    def __init__(self, lease: float = DEFAULT_DELIVERY_LEASE) -> None:
        if not lease >= 0:
            raise ValueError(f"a delivery lease must not be negative, got {lease}")
        self.lease = lease
        self._handed: dict[str, float] = {}

    def handed(self, message_ids: Iterable[str], now: float) -> None:
        """These instructions went out in a pull response at `now`."""
        for message_id in message_ids:
            self._handed[message_id] = now

    def leased(self, message_id: str, now: float) -> bool:
        """Whether the instruction went out less than a lease ago (so is not due again)."""
        handed = self._handed.get(message_id)
        return handed is not None and now < handed + self.lease

    def next_lapse(self, message_ids: Iterable[str], now: float) -> float | None:
        """The earliest time one of these instructions, on lease at `now`, is due again."""
        ends = [self._handed[m] + self.lease for m in message_ids if self.leased(m, now)]
        return min(ends, default=None)

    def forget(self, message_ids: Iterable[str]) -> None:
        """The instructions are gone (answered and delivered, expired, or dropped)."""
        for message_id in message_ids:
            self._handed.pop(message_id, None)
