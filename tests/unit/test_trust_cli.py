"""The trusted-apps commands: `stamen keys new`, `stamen build --sign`, and the SuperNode's
`--trusted-entities` / `--allow-bundle` flags (bad input: exit 2 and one line)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from stamen.cli.app import stamen
from stamen.common.bundle import bundle_hash
from stamen.common.signing import read_signature
from stamen.common.trust import TrustPolicy
from stamen.supernode.cli import main as supernode_main


def invoke(*args: str) -> Result:
    return CliRunner().invoke(stamen, list(args), catch_exceptions=False)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    result = invoke("new", "my-app", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    return tmp_path / "my-app"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The SuperNode CLI sets up the root logger; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_keys_new_then_build_sign_makes_a_bundle_the_printed_line_trusts(
    app: Path, tmp_path: Path
) -> None:
    key = tmp_path / "publisher"
    made = invoke("keys", "new", str(key), "--comment", "alice@lab")
    assert made.exit_code == 0, made.output
    trusted = tmp_path / "trusted.toml"
    trusted.write_text(made.stdout)
    assert made.stdout.rstrip().endswith(' alice@lab"')
    out = tmp_path / "out"
    built = invoke("build", str(app), "-o", str(out), "--format", "json", "--sign", str(key))
    assert built.exit_code == 0, built.output
    summary = json.loads(built.stdout)
    data = Path(summary["path"]).read_bytes()
    assert bundle_hash(data) == summary["sha256"]
    assert summary["path"].endswith(f".{summary['sha256'][:8]}.bundle")
    policy = TrustPolicy.from_options(trusted, [])
    assert policy is not None
    signature = read_signature(data)
    assert signature is not None
    assert policy.check(data, summary["sha256"]) == signature.key_id
    unsigned = invoke("build", str(app), "-o", str(out), "--format", "json")
    assert read_signature(Path(json.loads(unsigned.stdout)["path"]).read_bytes()) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "{app}", "--sign", "{tmp}/missing"], "cannot read the key"),
        (["build", "{app}", "--sign", "{app}/pyproject.toml"], "is not an unencrypted private"),
        (["run", "{app}", "remote", "--sign", "{tmp}/missing"], "cannot read the key"),
        (["keys", "new", "{app}/pyproject.toml"], "exists: a key is never overwritten"),
    ],
)
def test_bad_keys_are_one_line_and_exit_2(
    app: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    pyproject = app / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + f'\n[tool.stamen.federations.remote]\naddress = "127.0.0.1:{free_port()}"\n'
        + "insecure = true\n"
    )
    filled = [a.replace("{app}", str(app)).replace("{tmp}", str(tmp_path)) for a in args]
    result = invoke(*filled)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("stamen: error: ")
    assert message in lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def supernode(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exited:
        supernode_main(args)
    code = exited.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err.strip().splitlines()


def unreachable(tmp_path: Path) -> list[str]:
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    return ["--insecure", "--dir", str(empty), "--server", f"127.0.0.1:{free_port()}",
            "--max-retries", "0", "--bundle-cache", str(tmp_path / "cache")]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trusted-entities", "{tmp}/missing.toml"], "--trusted-entities: cannot read"),
        (["--trust-entities", "{tmp}/bad.toml"], "'SHA256:x': not an OpenSSH public key"),
        (["--allow-bundle", "sha256:1234"], "--allow-bundle: 'sha256:1234' is not a bundle hash"),
        (["client:app", "--allow-bundle", "0" * 64], "apply to a node without an APP"),
    ],
)
def test_bad_trust_flags_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.toml").write_text('"SHA256:x" = "ssh-ed25519 nope"\n')
    filled = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, lines = supernode([*filled, *unreachable(tmp_path)], capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("stamen-supernode: error: ")
    assert message in lines[0]


def test_an_open_node_says_once_that_any_app_will_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = supernode(unreachable(tmp_path), capsys)
    assert code == 1  # gave up on the SuperLink, after starting
    warned = [line for line in lines if "any app submitted to the SuperLink will run" in line]
    assert len(warned) == 1, lines


def test_a_trusting_node_says_what_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = invoke("keys", "new", str(tmp_path / "publisher"))
    (tmp_path / "trusted.toml").write_text(made.stdout)
    args = ["--trusted-entities", str(tmp_path / "trusted.toml"), "--allow-bundle", "a" * 64]
    code, lines = supernode([*args, *unreachable(tmp_path)], capsys)
    assert code == 1
    assert any(
        "running only bundles signed by one of 1 trusted publisher(s) and one of 1 pinned "
        "bundle(s)" in line
        for line in lines
    ), lines
    assert not any("any app submitted" in line for line in lines)
