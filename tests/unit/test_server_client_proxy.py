"""ClientProxy: one legacy call is one message through the Grid."""

from __future__ import annotations

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.client import ClientApp, NumPyClient
from stamen.common.errors import NodeReplyError
from stamen.common.legacy import (
    Code,
    EvaluateIns,
    FitIns,
    GetParametersIns,
    GetPropertiesIns,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.server import ClientProxy
from stamen.server.client_proxy import node_label


class Doubler(NumPyClient):
    def get_properties(self, config):
        return {"kind": "doubler"}

    def get_parameters(self, config):
        return [np.arange(3.0)]

    def fit(self, parameters, config):
        if config.get("explode"):
            raise RuntimeError("boom")
        return [2 * p for p in parameters], 7, {"seen": config["k"]}

    def evaluate(self, parameters, config):
        return 0.5, 7, {}


def proxy(node_id: int = 42) -> tuple[InProcessGrid, ClientProxy]:
    grid = InProcessGrid.with_apps(
        ClientApp(client_fn=lambda ctx: Doubler().to_client()), [node_id]
    )
    return grid, ClientProxy(node_id, grid.nodes[node_id].node_config, grid)


def test_legacy_calls_round_trip_through_the_grid() -> None:
    grid, client = proxy()
    params = ndarrays_to_parameters([np.ones(3)])
    res = client.fit(FitIns(params, {"k": 3}), timeout=1.0, group_id=4)
    np.testing.assert_array_equal(parameters_to_ndarrays(res.parameters)[0], [2.0, 2.0, 2.0])
    assert (res.num_examples, res.metrics) == (7, {"seen": 3})
    assert client.evaluate(EvaluateIns(params, {}), None, 4).loss == 0.5
    got = client.get_parameters(GetParametersIns({}), None, None)
    assert got.status.code == Code.OK
    np.testing.assert_array_equal(parameters_to_ndarrays(got.parameters)[0], [0.0, 1.0, 2.0])
    assert client.get_properties(GetPropertiesIns({}), None, None).properties == {"kind": "doubler"}
    assert [m.metadata.message_type for m in grid.sent] == [
        "train",
        "evaluate",
        "query.get_parameters",
        "query.get_properties",
    ]
    assert [m.metadata.group_id for m in grid.sent] == ["4", "4", "", ""]
    assert {m.metadata.dst_node_id for m in grid.sent} == {42}


def test_error_and_missing_replies_raise_node_reply_error() -> None:
    grid, client = proxy()
    params = ndarrays_to_parameters([np.ones(3)])
    with pytest.raises(NodeReplyError, match=r"node 42 \(partition-id=0\): RuntimeError: boom"):
        client.fit(FitIns(params, {"explode": True}), timeout=1.0, group_id=1)
    grid.silent.add(42)
    with pytest.raises(NodeReplyError, match=r"node 42 \(partition-id=0\): no reply within 2s"):
        client.evaluate(EvaluateIns(params, {}), timeout=2.0, group_id=1)


def test_cid_is_the_partition_id_else_the_node_id() -> None:
    grid = InProcessGrid([])
    assert ClientProxy(9, {"partition-id": 3}, grid).cid == "3"
    assert ClientProxy(9, {"partition-id": "3"}, grid).partition_id == 3
    assert ClientProxy(9, {}, grid).cid == "9"
    assert ClientProxy(9, {"partition-id": "train"}, grid).cid == "9"


@pytest.mark.parametrize(
    ("node_config", "label"),
    [
        ({}, "node 7"),
        ({"partition-id": 1, "num-partitions": 4}, "node 7 (partition-id=1)"),
        ({"name": "hospital-a", "region": "eu"}, "node 7 (name=hospital-a, region=eu)"),
        ({"num-partitions": 4}, "node 7 (num-partitions=4)"),
        ({"path": "x" * 80}, "node 7 (path=" + "x" * 52 + "...)"),
    ],
)
def test_a_node_is_named_by_its_config(node_config: dict, label: str) -> None:
    assert node_label(7, node_config) == label


def test_a_reason_that_names_the_node_is_not_named_twice() -> None:
    _, client = proxy()
    assert client.labelled("node 42 went offline") == "node 42 (partition-id=0) went offline"
    assert client.labelled("no reply") == "node 42 (partition-id=0): no reply"
    assert client.labelled("node 421 went offline").startswith("node 42 (partition-id=0): ")
