"""Errors say whose fault it is once, and cross process boundaries intact."""

from __future__ import annotations

import pickle

from stamen.common.errors import AppLoadError, NodeNotFoundError, NodeReplyError


def test_a_node_reply_error_names_the_node_once() -> None:
    assert str(NodeReplyError(7, "node 7 went offline")) == "node 7 went offline"
    assert str(NodeReplyError(7, "no reply within 5s")) == "node 7: no reply within 5s"


def test_errors_carrying_data_survive_pickling() -> None:
    # Worker processes send them back to the pool.
    load = pickle.loads(pickle.dumps(AppLoadError("client:app", "no module named 'client'")))
    assert (type(load), load.reference, str(load)) == (
        AppLoadError,
        "client:app",
        "cannot load app 'client:app': no module named 'client'",
    )
    node = pickle.loads(pickle.dumps(NodeNotFoundError(5)))
    assert (type(node), node.node_id, str(node)) == (
        NodeNotFoundError,
        5,
        "node 5 is not registered",
    )
