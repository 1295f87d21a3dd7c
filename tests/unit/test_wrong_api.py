"""A client pointed at another of the SuperLink's ports says which API is there and which
one it needs, instead of grpclib's "Missing content-type header"."""

from __future__ import annotations

import pytest
from stamen.common.errors import ConfigError
from stamen.transport.grpc.channel import connect
from stamen.transport.grpc.clients import (
    GrpcControlClient,
    GrpcFleetClient,
    GrpcServerAppIoClient,
)
from test_runner_grpc import running_superlink


async def test_each_client_at_the_wrong_port_is_told_where_it_is() -> None:
    async with running_superlink() as listening:
        serverappio = connect(listening.serverappio, root_certificates=None, insecure=True)
        fleet = connect(listening.fleet, root_certificates=None, insecure=True)
        try:
            with pytest.raises(ConfigError) as node:
                await GrpcFleetClient(serverappio).register_node({})
            with pytest.raises(ConfigError) as runner:
                await GrpcServerAppIoClient(fleet).get_run(1)
            with pytest.raises(ConfigError) as tool:
                await GrpcControlClient(fleet).list_runs()
        finally:
            serverappio.close()
            fleet.close()
    assert str(node.value) == (
        f"{listening.serverappio} is the ServerAppIo API; SuperNodes connect to the Fleet "
        "API (port 9092 by default)"
    )
    assert str(runner.value).startswith(f"{listening.fleet} is the Fleet API; ServerApp runners")
    assert str(tool.value).endswith(
        "the stamen CLI connects to the Control API (port 9093 by default)"
    )
