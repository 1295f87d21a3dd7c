"""What a person watching a simulation sees: the progress line per round, the log lines
around it, the summary table, and the CLI's help."""

from __future__ import annotations

import io
import itertools
import re
import subprocess
import sys

from click.testing import CliRunner
from stamen.codec.envelope import Envelope
from stamen.common.message import MessageType, Metadata
from stamen.server.history import History
from stamen.server.summary import summary_table
from stamen.simulation.cli import simulation
from stamen.simulation.progress import RoundProgress, StatusLine, stderr_above

_ids = itertools.count(1)


class Lines:
    """A Display that records what it is asked to show and to keep."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.kept: list[str] = []

    def show(self, text: str) -> None:
        self.shown.append(text)

    def commit(self, text: str) -> None:
        self.kept.append(text)


def instructions(group: str, message_type: str, count: int) -> list[Envelope]:
    return [
        Envelope(Metadata(1, f"m{next(_ids)}", 0, 7, "", group, 0.0, 60.0, message_type), b"")
        for _ in range(count)
    ]


def replies(sent: list[Envelope]) -> list[Envelope]:
    return [
        Envelope(
            Metadata(1, f"r{next(_ids)}", 7, 0, e.message_id, e.metadata.group_id, 0.0, 60.0, ""),
            b"",
        )
        for e in sent
    ]


def test_one_line_per_round_kept_once_its_evaluation_is_answered() -> None:
    lines = Lines()
    now = iter(float(t) for t in range(100))
    progress = RoundProgress(lines, clock=lambda: next(now))

    fit = instructions("1", MessageType.TRAIN, 3)
    progress.sent(fit)
    progress.received(replies(fit[:2]))
    progress.received(replies(fit[2:]))
    evaluate = instructions("1", MessageType.EVALUATE, 2)
    progress.sent(evaluate)
    progress.received(replies(evaluate))
    progress.sent(instructions("2", MessageType.TRAIN, 3))
    progress.close()

    assert lines.shown[0].startswith("round 1: train 0/3 replies")
    assert lines.shown[1].startswith("round 1: train 2/3 replies")
    assert lines.kept[0].startswith("round 1: train 3/3, evaluate 2/2 replies")
    assert lines.kept[0].endswith("done")
    assert lines.kept[1].startswith("round 2: train 0/3 replies")
    assert len(lines.kept) == 2


def test_a_round_without_evaluation_is_kept_when_the_next_one_starts() -> None:
    lines = Lines()
    progress = RoundProgress(lines, clock=lambda: 0.0)

    fit = instructions("1", MessageType.TRAIN, 2)
    progress.sent(fit)
    progress.received(replies(fit))
    assert lines.kept == []
    progress.sent(instructions("2", MessageType.TRAIN, 2))

    assert lines.kept == ["round 1: train 2/2 replies, 0.00s done"]


def test_log_lines_print_above_the_status_line() -> None:
    terminal = io.StringIO()
    status = StatusLine(terminal)

    status.show("round 1: train 0/3")
    status.stream.write("a log line\n")
    status.commit("round 1: train 3/3")
    status.stream.write("another\n")

    erase = "\r\x1b[K"
    assert terminal.getvalue() == (
        f"{erase}round 1: train 0/3"
        f"{erase}a log line\nround 1: train 0/3"
        f"{erase}round 1: train 3/3\n"
        "another\n"
    )


def test_what_other_processes_print_to_stderr_goes_above_the_line() -> None:
    terminal = io.StringIO()
    status = StatusLine(terminal)
    status.show("round 1: train 0/3")

    with stderr_above(status):
        subprocess.run(  # a worker process, printing to its inherited stderr
            [sys.executable, "-c", "import sys; sys.stderr.write('from a worker\\n')"],
            check=True,
            timeout=60,
        )

    erase = "\r\x1b[K"
    assert terminal.getvalue() == (
        f"{erase}round 1: train 0/3{erase}from a worker\nround 1: train 0/3"
    )


def test_the_summary_table_has_a_row_per_round() -> None:
    history = History()
    history.add_loss_centralized(0, 2.5)
    for server_round, loss in ((1, 0.81649), (2, 0.5)):
        history.add_loss_distributed(server_round, loss)
        history.add_metrics_distributed(server_round, {"accuracy": 0.75 + server_round / 100})
        history.add_metrics_distributed_fit(server_round, {"accuracy": 0.5, "examples": 300})
        history.add_failures(server_round, server_round - 1)  # fit's
        history.add_failures(server_round, 1)  # evaluate's, in the same round's cell
        history.add_round_time(server_round, 0.3141)

    lines = summary_table(history).splitlines()

    assert re.split(r"\s{2,}", lines[0]) == [
        "round",
        "loss",
        "central loss",
        "accuracy",
        "fit accuracy",
        "examples",
        "failures",
        "seconds",
    ]
    assert [line.split() for line in lines[1:]] == [
        ["0", "-", "2.5", "-", "-", "-", "-", "-"],
        ["1", "0.8165", "-", "0.76", "0.5", "300", "1", "0.31"],
        ["2", "0.5", "-", "0.77", "0.5", "300", "2", "0.31"],
    ]
    assert summary_table(History()) == ""


def test_the_help_explains_every_option() -> None:
    result = CliRunner().invoke(simulation, ["--help"])

    assert result.exit_code == 0
    for option in (
        "--server-app",
        "--client-app",
        "--num-supernodes",
        "--backend-config",
        "--run-config",
        "--seed",
        "--dir",
        "--log-level",
        "--version",
        "STAMEN_NUM_SUPERNODES",
        "partition-id",
    ):
        assert option in result.output
