"""Issue 15's attacks against real processes over TLS on loopback, and the authenticated
deployment of the README end to end.

- With node and operator authentication on (README "Deployment with authentication"):
  the quickstart runs to the end with SuperNodes signing with listed keys and the runner
  holding an operator token; a SuperNode whose key is not listed exits 2 at once with a
  one-line hint; an attacker holding only the CA certificate (and no token, or a guessed
  one) can neither join, nor list nodes or runs, nor create or stop a run.
- With node authentication off (and the operator APIs opened explicitly,
  `--allow-unauthenticated-operators`): an attacker still cannot pull, answer, heartbeat
  for or unregister another node, and the victim's run completes.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from procs import (
    ROOT,
    Procs,
    SuperLink,
    serverapp_args,
    start_supernodes,
    superlink_args,
    supernode_args,
    terminate_all,
)
from stamen.auth.keys import generate_key, write_key_pair
from stamen.common.errors import UnauthenticatedError
from stamen.transport.grpc import (
    GrpcControlClient,
    GrpcFleetClient,
    GrpcServerAppIoClient,
    connect,
)
from stamen.transport.grpc.guard import read_operator_token, use_operator_token

pytestmark = pytest.mark.integration

NUMPY = ROOT / "examples" / "quickstart-numpy"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make keys`: two node key pairs, keys.csv, an operator token and its hash file."""
    directory = tmp_path_factory.mktemp("keys")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "make-keys.sh"), str(directory), "3"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return directory


def _auth_superlink(keys: Path, certs: Path) -> list[str]:
    return superlink_args(
        certs=certs,
        extra=[
            "--enable-supernode-auth",
            "--auth-list-public-keys", str(keys / "keys.csv"),
            "--auth-operator-tokens", str(keys / "operators.txt"),
        ],
    )  # fmt: skip


async def test_an_authenticated_deployment_runs_end_to_end(
    procs: Procs, certs: Path, keys: Path
) -> None:
    link = SuperLink.started(procs.start("superlink", _auth_superlink(keys, certs)))
    link.proc.wait_for(r"SuperNode authentication on: 3 allowed key", timeout=1)
    nodes = [
        procs.start(
            f"supernode-{i}",
            [
                *supernode_args(
                    "client:app",
                    NUMPY,
                    link.fleet,
                    certs=certs,
                    node_config=f"partition-id={i} num-partitions=2",
                ),
                "--auth-supernode-private-key",
                str(keys / f"node-{i + 1}"),
            ],
        )
        for i in range(2)
    ]
    for node in nodes:
        node.wait_for(r"registered as node \d+", timeout=60)
    server = procs.start(
        "serverapp",
        [
            *serverapp_args(
                "server:app", NUMPY, link.serverappio, certs=certs, run_config="num-server-rounds=2"
            ),
            "--operator-token-file", str(keys / "operator.token"),
        ],
    )  # fmt: skip
    assert server.wait(timeout=120) == 0, server.tail()
    assert len(server.matches(r"aggregate_fit: received 2 results and 0 failures")) == 2

    # A SuperNode whose key is not on the list: refused at once, one line, exit 2.
    stranger = keys.parent / "stranger"
    write_key_pair(generate_key(), stranger)
    stranger_argv = [
        *supernode_args("client:app", NUMPY, link.fleet, certs=certs, node_config="partition-id=0"),
        "--auth-supernode-private-key", str(stranger),
    ]  # fmt: skip
    refused = procs.start("stranger", stranger_argv)
    assert refused.wait(timeout=30) == 2, refused.tail()
    errors = [line for line in refused.output().splitlines() if ": error: " in line]
    assert len(errors) == 1, refused.tail()
    assert "not on the SuperLink's list" in errors[0]
    assert "--auth-list-public-keys" in errors[0]

    # Enrolled at run time: its .pub line added to the list, then SIGHUP.
    with (keys / "keys.csv").open("a") as listing:
        listing.write(stranger.with_name("stranger.pub").read_text())
    link.proc.popen.send_signal(signal.SIGHUP)
    link.proc.wait_for(r"reloaded 4 allowed SuperNode key", timeout=10)
    admitted = procs.start("admitted", stranger_argv)
    admitted.wait_for(r"registered as node \d+", timeout=60)
    nodes.append(admitted)

    await _attack_operator_apis(link, certs, keys)
    assert terminate_all(nodes) == {node.name: 0 for node in nodes}
    assert link.proc.terminate() == 0, link.proc.tail()


async def _attack_operator_apis(link: SuperLink, certs: Path, keys: Path) -> None:
    """Holding only the CA certificate: no join, no listing, no stopping; with the
    operator's token: all of it."""
    ca = certs / "ca.crt"
    fleet = connect(link.fleet, root_certificates=ca, insecure=False)
    serverappio = connect(link.serverappio, root_certificates=ca, insecure=False)
    control = connect(link.control, root_certificates=ca, insecure=False)
    operator = connect(link.control, root_certificates=ca, insecure=False)
    use_operator_token(operator, read_operator_token(keys / "operator.token"))
    guessed = [connect(address, root_certificates=ca, insecure=False)
               for address in (link.serverappio, link.control)]  # fmt: skip
    for channel in guessed:
        use_operator_token(channel, "a-guessed-token")
    try:
        with pytest.raises(UnauthenticatedError, match="not on the SuperLink's list"):
            await GrpcServerAppIoClient(guessed[0]).create_run("s:a", "c:a", {})
        with pytest.raises(UnauthenticatedError, match="not on the SuperLink's list"):
            await GrpcControlClient(guessed[1]).list_runs()
        with pytest.raises(UnauthenticatedError, match="not signed"):
            await GrpcFleetClient(fleet).register_node({})
        with pytest.raises(UnauthenticatedError, match="operator token"):
            await GrpcServerAppIoClient(serverappio).get_nodes(1)
        with pytest.raises(UnauthenticatedError, match="operator token"):
            await GrpcServerAppIoClient(serverappio).create_run("s:a", "c:a", {})
        with pytest.raises(UnauthenticatedError, match="operator token"):
            await GrpcControlClient(control).list_runs()
        [run] = await GrpcControlClient(operator).list_runs()
        with pytest.raises(UnauthenticatedError, match="operator token"):
            await GrpcControlClient(control).stop_run(run.run_id)
        assert (await GrpcControlClient(operator).get_run(run.run_id)).sub_status == "completed"
    finally:
        for channel in (fleet, serverappio, control, operator, *guessed):
            channel.close()


async def test_without_auth_a_node_still_acts_only_as_itself(procs: Procs, certs: Path) -> None:
    link = SuperLink.started(procs.start("superlink", superlink_args(certs=certs)))
    nodes = start_supernodes(procs, 2, "client:app", NUMPY, link.fleet, certs=certs)
    victims = [int(node.matches(r"registered as node (\d+)")[0][1]) for node in nodes]
    await _attack_fleet(link, certs, victims)
    server = procs.start(
        "serverapp",
        serverapp_args(
            "server:app", NUMPY, link.serverappio, certs=certs, run_config="num-server-rounds=1"
        ),
    )
    assert server.wait(timeout=120) == 0, server.tail()
    assert terminate_all(nodes) == {node.name: 0 for node in nodes}
    assert link.proc.terminate() == 0, link.proc.tail()


async def _attack_fleet(link: SuperLink, certs: Path, victims: list[int]) -> None:
    channel = connect(link.fleet, root_certificates=certs / "ca.crt", insecure=False)
    attacker = GrpcFleetClient(channel, timeout=10)
    try:
        for victim in victims:
            with pytest.raises(UnauthenticatedError):
                await attacker.pull_messages(victim, 0)
            with pytest.raises(UnauthenticatedError):
                await attacker.unregister_node(victim)
            with pytest.raises(UnauthenticatedError):
                await attacker.heartbeat(victim)
    finally:
        channel.close()
