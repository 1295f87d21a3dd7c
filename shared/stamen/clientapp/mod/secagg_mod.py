"""secagg_mod: a node's side of SecAgg, which is SecAgg+ with every node a neighbour.

The server's `SecAggWorkflow` makes the difference (one share per sampled node); the
node runs the same stages, so this is `secaggplus_mod` under Flower's other name.
"""

from __future__ import annotations

from stamen.common.context import Context
from stamen.common.message import Message

from .secaggplus_mod import ClientAppCallable, secaggplus_mod

__all__ = ["secagg_mod"]


def secagg_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Run this node's part of the SecAgg stage the message asks for."""
    return secaggplus_mod(msg, ctxt, call_next)
