"""ClientManager: grid-backed availability, deterministic sampling, bounded waits."""

from __future__ import annotations

import logging

import pytest
from inprocess_grid import InProcessGrid
from stamen.common.errors import NotEnoughNodesError
from stamen.common.message import Message
from stamen.server import ClientManager, ClientProxy, SimpleClientManager


def never_called(message: Message, context: object) -> Message:
    raise AssertionError("sampling must not send messages")


def sampled_partitions(node_ids: list[int], seed: int, rounds: int = 3) -> list[list[str]]:
    grid = InProcessGrid.with_apps(never_called, node_ids)
    manager = ClientManager()
    manager.bind(grid, seed=seed)
    return [sorted(p.cid for p in manager.sample(3)) for _ in range(rounds)]


def test_sampling_depends_on_partitions_and_seed_not_node_ids() -> None:
    simulation = sampled_partitions([1, 2, 3, 4, 5, 6, 7, 8], seed=7)
    deployment = sampled_partitions([9001, 17, 4242, 5, 333, 81, 12, 600], seed=7)
    assert simulation == deployment
    assert len({tuple(map(tuple, sampled_partitions(list(range(8)), s))) for s in range(6)}) > 1


def test_bind_tracks_the_grids_online_nodes() -> None:
    grid = InProcessGrid.with_apps(never_called, [30, 10, 20])
    manager = SimpleClientManager()
    manager.bind(grid)
    assert manager.num_available() == 3
    assert list(manager.all()) == ["0", "1", "2"]
    kept = manager.all()["0"]
    grid.offline.add(20)
    manager.refresh()
    assert manager.num_available() == 2
    assert manager.all()["0"] is kept
    assert {p.node_id for p in manager.all().values()} == {30, 10}


def test_register_and_unregister_without_a_grid() -> None:
    manager = ClientManager()
    proxy = ClientProxy(4, {}, InProcessGrid([]))
    assert manager.register(proxy)
    assert not manager.register(ClientProxy(4, {}, InProcessGrid([])))
    assert manager.all() == {"4": proxy}
    assert manager.wait_for(1, timeout=0.0)
    manager.unregister(proxy)
    assert manager.num_available() == 0
    assert not manager.wait_for(1, timeout=0.01)


def test_sample_returns_empty_when_fewer_than_requested(caplog) -> None:
    caplog.set_level(logging.INFO, logger="stamen")
    manager = ClientManager()
    manager.bind(InProcessGrid.with_apps(never_called, [1, 2]))
    assert manager.sample(3, min_num_clients=2) == []
    assert "Sampling failed" in caplog.text


def test_criterion_filters_the_sample() -> None:
    class EvenPartitions:
        def select(self, client: ClientProxy) -> bool:
            return client.partition_id is not None and client.partition_id % 2 == 0

    manager = ClientManager()
    manager.bind(InProcessGrid.with_apps(never_called, range(10, 16)))
    cids = {p.cid for p in manager.sample(3, criterion=EvenPartitions())}
    assert cids == {"0", "2", "4"}


def test_waiting_for_nodes_logs_progress_and_gives_up(caplog) -> None:
    caplog.set_level(logging.INFO, logger="stamen")
    manager = ClientManager()
    manager.bind(InProcessGrid.with_apps(never_called, [1, 2]), wait_timeout=0.05)
    with pytest.raises(NotEnoughNodesError, match=r"only 2 of the 5 nodes .* 0\.05s") as info:
        manager.sample(5)
    assert (info.value.required, info.value.available) == (5, 2)
    assert "waiting for nodes: 2 of 5 online; giving up in 0s" in caplog.text


def test_waiting_for_nodes_names_the_fleet_address_the_grid_knows(caplog) -> None:
    caplog.set_level(logging.INFO, logger="stamen")
    grid = InProcessGrid.with_apps(never_called, [1])
    grid.fleet_address = "10.0.0.5:9092"  # type: ignore[attr-defined]  # a deployment's grid
    manager = ClientManager()
    manager.bind(grid, wait_timeout=0.05)
    with pytest.raises(NotEnoughNodesError, match=r"only 1 of the 2 nodes"):
        manager.sample(2)
    assert (
        "waiting for nodes: 1 of 2 online (start SuperNodes with --superlink 10.0.0.5:9092, "
        "the Fleet API); giving up in 0s" in caplog.text
    )


def test_waiting_sees_nodes_that_come_online() -> None:
    grid = InProcessGrid.with_apps(never_called, [1, 2, 3])
    grid.offline.add(3)
    manager = ClientManager()
    manager.bind(grid, wait_timeout=5.0)

    calls = 0
    original = grid.get_nodes

    def get_nodes():  # the third node shows up on the third poll
        nonlocal calls
        calls += 1
        if calls >= 4:
            grid.offline.clear()
        return original()

    grid.get_nodes = get_nodes
    manager.poll_interval = 0.01
    assert manager.wait_for(3)
    assert manager.num_available() == 3
