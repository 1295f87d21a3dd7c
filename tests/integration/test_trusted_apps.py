"""Trusted apps with real processes on loopback: an app-less SuperNode that trusts one
publisher refuses an unsigned bundle and a tampered signed one (nothing of theirs runs:
the ClientApp would write a marker file when imported), then runs the signed bundle.
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path

import pytest
from procs import Proc, Procs, SuperLink, superlink_args
from stamen.codec.objects import iter_chunks
from stamen.common.bundle import bundle_hash
from stamen.common.project import open_project
from stamen.transport.grpc.channel import connect
from stamen.transport.grpc.clients import GrpcControlClient

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

STEP_TIMEOUT = 120.0
RUN_CONFIG = "num-server-rounds=1 min-nodes=1"


def stamen(procs: Procs, *args: str, cwd: Path) -> Proc:
    return procs.start("stamen", ["stamen", *args], cwd=cwd)


def finished(proc: Proc, code: int = 0) -> str:
    assert proc.wait(timeout=STEP_TIMEOUT) == code, proc.tail()
    return proc.output()


def tampered(bundle: bytes) -> bytes:
    """`bundle` with one byte of the ClientApp's code changed, as a valid archive that
    still carries the original signature (the SuperLink refuses a broken zip itself)."""
    changed = BytesIO()
    with zipfile.ZipFile(BytesIO(bundle)) as source, zipfile.ZipFile(changed, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("client_app.py"):
                assert data.endswith(b"\n")
                data = data[:-1] + b" "
            target.writestr(info, data)
        target.comment = source.comment
    assert changed.getvalue() != bundle
    return changed.getvalue()


async def _chunks(data: bytes) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data):
        yield chunk


def submit(control: str, bundle: bytes, app: Path) -> int:
    _, config = open_project(app, RUN_CONFIG)

    async def main() -> int:
        channel = connect(control, root_certificates=None, insecure=True)
        try:
            client = GrpcControlClient(channel)
            digest = bundle_hash(bundle)
            await client.push_bundle(digest, len(bundle), _chunks(bundle))
            return (await client.submit_run(digest, config)).run_id
        finally:
            channel.close()

    return asyncio.run(main())


def test_a_trusting_node_runs_only_the_signed_bundle(procs: Procs, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "client-app-ran"
    finished(stamen(procs, "new", "app", "--template", "numpy", cwd=work))
    app = work / "app"
    client = app / "app" / "client_app.py"
    client.write_text(
        client.read_text() + f"\nimport pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    )
    key_line = finished(stamen(procs, "keys", "new", str(tmp_path / "publisher"), cwd=work))
    trusted = tmp_path / "trusted.toml"
    trusted.write_text(key_line)

    link = SuperLink.started(procs.start("superlink", superlink_args(certs=None)))
    empty = tmp_path / "empty"
    empty.mkdir()
    node = procs.start(
        "supernode",
        ["stamen-supernode", "--dir", str(empty), "--server", link.fleet, "--insecure",
         "--trusted-entities", str(trusted), "--bundle-cache", str(tmp_path / "bundles")],
    )  # fmt: skip
    node.wait_for(r"registered as node")
    assert node.matches(r"running only bundles signed by one of 1 trusted publisher")
    pyproject = app / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + f'\n[tool.stamen.federations.local]\naddress = "{link.control}"\ninsecure = true\n'
    )

    # 1. Unsigned: refused with the reason, the run fails, nothing ran.
    unsigned = stamen(procs, "run", "app", "local", "--stream", "--run-config", RUN_CONFIG,
                      cwd=work)  # fmt: skip
    assert unsigned.wait(timeout=STEP_TIMEOUT) == 1, unsigned.tail()
    node.wait_for(r"is not signed by a trusted publisher: it carries no signature")
    assert not marker.exists()

    # 2. Signed, then one byte of its code changed: refused, nothing ran.
    built = finished(
        stamen(procs, "build", "app", "--sign", str(tmp_path / "publisher"), "-o",
               str(tmp_path / "out"), "--format", "json", cwd=work)
    )  # fmt: skip
    signed = Path(json.loads(built)["path"]).read_bytes()
    run_id = submit(link.control, tampered(signed), app)
    follow = stamen(procs, "log", str(run_id), "app", "local", "--follow", cwd=work)
    assert follow.wait(timeout=STEP_TIMEOUT) == 1, follow.tail()
    node.wait_for(r"is not signed by a trusted publisher: the signature of SHA256:\S+ does not "
                  r"match its content")  # fmt: skip
    assert not marker.exists()

    # 3. The node still serves: the signed bundle runs to its end.
    streamed = finished(
        stamen(procs, "run", "app", "local", "--stream", "--sign", str(tmp_path / "publisher"),
               "--run-config", RUN_CONFIG, cwd=work)
    )  # fmt: skip
    assert "completed in" in streamed
    node.wait_for(r"is signed by trusted publisher SHA256:")
    assert marker.exists()
