"""SuperLink performance: heartbeats from many nodes, and object streams up and down.

The SuperLink runs as its own process (`python -m stamen.superlink.cli`, ports 0 on
127.0.0.1); this process drives it through the real gRPC clients on uvloop and measures
both sides with psutil and /proc. Figures (issue 3, "Performance"):

1. heartbeats: N nodes registered over C channels, then each beats once a second for S
   seconds, the beats spread evenly (call i is sent at t0 + i/N); every call's latency,
   CPU of the SuperLink, of this load generator and of the rest of the (shared) machine,
   and how late the generator sent (if it falls behind, it is the bottleneck).
2. throughput: an object of M MiB pushed up as a ServerApp does (create a run, push an
   instruction naming it to a registered node, push the object) and pulled down as that
   node (Fleet), insecure and over TLS; MiB/s, median of R; the SuperLink's CPU split in
   user/system time, its minor page faults per MiB, and its peak RSS during each
   transfer (VmHWM, reset before it). The pulled bytes are hashed after the clock stops.

    python -m benchmarks.superlink_bench [--nodes 1000 --seconds 20 --object-mib 256]

Everything is bounded (one deadline for the whole run) and every SuperLink it starts is
stopped by PID (SIGTERM, then SIGKILL). `--profile DIR` runs the SuperLink under cProfile
(CPU time); `--superlink-env NAME=VALUE` tries a setting on the SuperLink alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import uvloop
from grpclib.client import Channel
from stamen.codec import encode_message, iter_chunks
from stamen.codec.objects import Buffer
from stamen.common.message import Message
from stamen.common.records import ArrayRecord, RecordDict
from stamen.transport.grpc import GrpcFleetClient, GrpcServerAppIoClient, connect

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
DEADLINE = 170.0
"""Seconds the whole benchmark may take; past it, it stops its processes and fails."""
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0
"""A heartbeat (or any unary call) slower than this counts as failed."""
STREAM_TIMEOUT = 60.0
TLS_FILES = ("ca.crt", "server.pem", "server.key")
NOTES_MARKER = "<!-- Notes: everything below this line is kept when the benchmark reruns. -->"

_PROFILED = """
import cProfile, runpy, sys, time
out = sys.argv.pop(1)
profiler = cProfile.Profile(time.process_time)  # CPU time: the other agents' load drops out
try:
    profiler.runcall(runpy.run_module, "stamen.superlink.cli", run_name="__main__")
except SystemExit:
    pass
finally:
    profiler.dump_stats(out)
"""


# --- the SuperLink process --------------------------------------------------------------
class LinkProcess:
    """A started SuperLink, its log lines, and its CPU, faults and memory; stopped by PID."""

    def __init__(
        self,
        workdir: Path,
        *,
        database: str,
        certs: Path | None,
        heartbeat_interval: float,
        profile: Path | None,
        env: Mapping[str, str],
    ) -> None:
        self.certs = certs
        program = [sys.executable, "-m", "stamen.superlink.cli"]
        if profile is not None:
            program = [sys.executable, "-c", _PROFILED, str(profile)]
        security = ["--insecure"]
        if certs is not None:
            # Loopback measurements of the transport: operator tokens stay off, explicitly.
            security = [
                "--certificates",
                *(str(certs / name) for name in TLS_FILES),
                "--allow-unauthenticated-operators",
            ]
        argv = [
            *program, *security, "--database", database,
            "--heartbeat-interval", str(heartbeat_interval),
            "--fleet-api-address", "127.0.0.1:0",
            "--serverappio-api-address", "127.0.0.1:0",
            "--control-api-address", "127.0.0.1:0",
        ]  # fmt: skip
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self.popen = subprocess.Popen(
            argv,
            cwd=workdir,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.ps = psutil.Process(self.popen.pid)
        self._reader = threading.Thread(target=self._read, name="superlink-log", daemon=True)
        self._reader.start()
        self.fleet = self.serverappio = ""

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        with self._changed:
            while not any("SuperLink ready" in line for line in self._lines):
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    raise RuntimeError(f"the SuperLink did not start:\n{self.tail()}")
                self._changed.wait(left)
        self.fleet = self._address("Fleet")
        self.serverappio = self._address("ServerAppIo")

    def _address(self, api: str) -> str:
        for match in self.matches(rf"{api} API listening on (\S+)"):
            return match.group(1)
        raise RuntimeError(f"the SuperLink logged no {api} address:\n{self.tail()}")

    def matches(self, pattern: str) -> list[re.Match[str]]:
        regex = re.compile(pattern)
        with self._changed:
            found = [regex.search(line) for line in self._lines]
        return [match for match in found if match is not None]

    def tail(self, count: int = 20) -> str:
        with self._changed:
            return "\n".join(self._lines[-count:])

    def channel(self, address: str) -> Channel:
        ca = None if self.certs is None else self.certs / "ca.crt"
        channel: Channel = connect(address, root_certificates=ca, insecure=self.certs is None)
        return channel

    def minor_faults(self) -> int:
        """Minor page faults so far (0 where /proc cannot tell)."""
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{self.popen.pid}/stat").read_text()
            return int(stat.rsplit(")", 1)[1].split()[7])
        return 0

    def reset_peak_rss(self) -> None:
        """Reset the kernel's peak-RSS mark (VmHWM) where Linux allows it."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.popen.pid}/clear_refs").write_text("5")

    def peak_rss(self) -> int:
        """Peak RSS since the last reset (the current RSS where /proc cannot tell)."""
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{self.popen.pid}/status").read_text()
            found = re.search(r"VmHWM:\s+(\d+) kB", status)
            if found:
                return int(found.group(1)) * 1024
        return int(self.ps.memory_info().rss)

    def stop(self) -> None:
        """SIGTERM (a graceful stop also writes the profile), SIGKILL if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@contextlib.contextmanager
def superlink(workdir: Path, **options: Any) -> Iterator[LinkProcess]:
    link = LinkProcess(workdir, **options)
    try:
        link.wait_ready()
        yield link
    finally:
        link.stop()


@dataclass(frozen=True)
class Usage:
    """CPU seconds (SuperLink user and system, this process, the whole machine) and the
    SuperLink's minor faults: at an instant, or between two (`later - earlier`)."""

    link_user: float
    link_system: float
    link_faults: int
    load: float
    machine: float

    @classmethod
    def now(cls, link: LinkProcess) -> Usage:
        theirs, mine, machine = (
            link.ps.cpu_times(),
            psutil.Process().cpu_times(),
            psutil.cpu_times(),
        )
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return cls(theirs.user, theirs.system, link.minor_faults(), mine.user + mine.system, busy)

    def __sub__(self, earlier: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)))

    @property
    def link(self) -> float:
        return self.link_user + self.link_system

    @property
    def others(self) -> float:
        """What the rest of the machine used (other agents share it)."""
        return self.machine - self.link - self.load


# --- 1. heartbeats ----------------------------------------------------------------------
@dataclass
class Heartbeats:
    state: str
    nodes: int
    seconds: float
    register_s: float = 0.0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    wall: float = 0.0
    """From the first call sent to the last one answered."""
    usage: Usage | None = None
    rss: int = 0
    offline_events: int = 0


async def heartbeats(link: LinkProcess, figures: Heartbeats, channels: int) -> Heartbeats:
    opened = [link.channel(link.fleet) for _ in range(channels)]
    try:
        clients = [GrpcFleetClient(channel, timeout=CALL_TIMEOUT) for channel in opened]
        began = time.perf_counter()
        node_ids = await _register(clients, figures.nodes)
        figures.register_s = time.perf_counter() - began
        await _beat(clients, node_ids, link, figures)
    finally:
        for channel in opened:
            channel.close()
    figures.rss = int(link.ps.memory_info().rss)
    figures.offline_events = len(link.matches(r"went offline"))
    return figures


async def _register(clients: Sequence[GrpcFleetClient], nodes: int) -> list[int]:
    limit = asyncio.Semaphore(64)

    async def one(i: int) -> int:
        async with limit:
            registration = await clients[i % len(clients)].register_node({"partition-id": i})
            return int(registration.node_id)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(i)) for i in range(nodes)]
    return [task.result() for task in tasks]


async def _beat(
    clients: Sequence[GrpcFleetClient], node_ids: Sequence[int], link: LinkProcess, f: Heartbeats
) -> None:
    count = len(node_ids)
    total = int(count * f.seconds)

    async def beat(i: int, due: float) -> None:
        start = time.perf_counter()
        try:
            # As the client that registered the node: only it holds the node's token.
            node = i % count
            await clients[node % len(clients)].heartbeat(node_ids[node])
        except Exception as exc:  # counted and reported: a failure is a figure too
            f.failed += 1
            error = f"{type(exc).__name__}: {exc}"
            if len(f.errors) < 3 and error not in f.errors:
                f.errors.append(error)
            return
        f.latencies.append(time.perf_counter() - start)
        f.lags.append(start - due)

    before = Usage.now(link)
    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        i = 0
        while i < total:
            while i < total and t0 + i / count <= time.perf_counter():
                tg.create_task(beat(i, t0 + i / count))
                i += 1
            if i < total:
                await asyncio.sleep(max(t0 + i / count - time.perf_counter(), 0.0))
    f.wall = time.perf_counter() - t0
    f.usage = Usage.now(link) - before


# --- 2. throughput ----------------------------------------------------------------------
@dataclass(frozen=True)
class Transfer:
    mib_s: float
    seconds: float
    usage: Usage
    peak_rss: int


@dataclass
class Streams:
    security: str
    state: str
    size: int
    idle_rss: int = 0
    push: list[Transfer] = field(default_factory=list)
    pull: list[Transfer] = field(default_factory=list)


async def throughput(link: LinkProcess, figures: Streams, repeats: int) -> Streams:
    fleet_channel = link.channel(link.fleet)
    serverappio_channel = link.channel(link.serverappio)
    figures.idle_rss = int(link.ps.memory_info().rss)
    try:
        fleet = GrpcFleetClient(fleet_channel, stream_timeout=STREAM_TIMEOUT)
        serverappio = GrpcServerAppIoClient(serverappio_channel, stream_timeout=STREAM_TIMEOUT)
        node = (await fleet.register_node({"partition-id": 0})).node_id
        array = np.frombuffer(bytearray(np.random.default_rng(0).bytes(figures.size)), np.uint8)
        for repeat in range(repeats):  # a new object each time: the store keeps one copy
            array[:8] = np.frombuffer((repeat + 1).to_bytes(8, "little"), np.uint8)
            await _transfer(link, fleet, serverappio, node, array, figures)
    finally:
        fleet_channel.close()
        serverappio_channel.close()
    return figures


async def _transfer(
    link: LinkProcess,
    fleet: GrpcFleetClient,
    serverappio: GrpcServerAppIoClient,
    node: int,
    array: np.ndarray,
    figures: Streams,
) -> None:
    run_id = await serverappio.create_run("bench:server", "bench:client", {})
    content = RecordDict({"w": ArrayRecord([array])})
    message = Message(content, dst_node_id=node, message_type="train")
    message.metadata.run_id = run_id
    envelope, objects = encode_message(message)
    result = await serverappio.push_messages(run_id, [envelope])
    if len(result.missing_object_ids) != 1:
        raise RuntimeError(f"expected the store to lack exactly one object: {result}")
    [object_id] = result.missing_object_ids
    data = memoryview(objects[object_id])

    async def push() -> None:
        if not await serverappio.push_object(run_id, object_id, data.nbytes, _chunks(data)):
            raise RuntimeError("the SuperLink already had the object: nothing was measured")

    received: list[Buffer] = []

    async def pull() -> None:
        async for chunk in fleet.pull_object(node, object_id):
            received.append(chunk)

    figures.push.append(await _timed(link, push, data.nbytes))
    figures.pull.append(await _timed(link, pull, data.nbytes))
    digest = hashlib.sha256()
    for chunk in received:
        digest.update(chunk)
    if digest.hexdigest() != object_id:
        raise RuntimeError(f"the pulled bytes do not hash to {object_id}")
    await serverappio.update_run_status(run_id, "finished", "completed")  # frees the object


async def _timed(link: LinkProcess, transfer: Any, size: int) -> Transfer:
    link.reset_peak_rss()
    before, start = Usage.now(link), time.perf_counter()
    await transfer()
    seconds = time.perf_counter() - start
    return Transfer(size / MiB / seconds, seconds, Usage.now(link) - before, link.peak_rss())


async def _chunks(data: Buffer) -> AsyncIterator[memoryview]:
    for chunk in iter_chunks(data):
        yield chunk


# --- summaries and tables ---------------------------------------------------------------
def heartbeat_summary(f: Heartbeats) -> dict[str, Any]:
    usage, calls = f.usage, max(len(f.latencies), 1)
    assert usage is not None

    def ms(values: Sequence[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)) * 1000, 1) if values else None

    return {
        "state": f.state, "nodes": f.nodes, "seconds": f.seconds,
        "register_s": round(f.register_s, 2), "ok": len(f.latencies), "failed": f.failed,
        "p50_ms": ms(f.latencies, 50), "p99_ms": ms(f.latencies, 99),
        "max_ms": ms(f.latencies, 100), "send_lag_p99_ms": ms(f.lags, 99),
        "superlink_cpu_pct": round(usage.link / f.wall * 100),
        "superlink_us_per_call": round(usage.link / calls * 1e6),
        "loadgen_cpu_pct": round(usage.load / f.wall * 100),
        "loadgen_us_per_call": round(usage.load / calls * 1e6),
        "others_cpu_pct": round(usage.others / f.wall * 100),
        "superlink_rss_mib": round(f.rss / MiB), "offline_events": f.offline_events,
        "errors": f.errors,
    }  # fmt: skip


def stream_summary(f: Streams) -> dict[str, Any]:
    def way(transfers: Sequence[Transfer]) -> dict[str, Any]:
        def med(value: Any) -> float:
            return float(statistics.median(value(t) for t in transfers))

        return {
            "mib_s": [round(t.mib_s) for t in transfers],
            "superlink_cpu_pct": round(med(lambda t: t.usage.link / t.seconds) * 100),
            "superlink_user_ms_per_mib": round(med(lambda t: t.usage.link_user) / mib * 1e3, 2),
            "superlink_system_ms_per_mib": round(med(lambda t: t.usage.link_system) / mib * 1e3, 2),
            "superlink_faults_per_mib": round(med(lambda t: t.usage.link_faults) / mib),
            "client_cpu_pct": round(med(lambda t: t.usage.load / t.seconds) * 100),
            "others_cpu_pct": round(med(lambda t: t.usage.others / t.seconds) * 100),
            "superlink_peak_rss_mib": round(max(t.peak_rss for t in transfers) / MiB),
        }

    mib = f.size / MiB
    return {"security": f.security, "state": f.state, "object_mib": round(mib),
            "superlink_idle_rss_mib": round(f.idle_rss / MiB),
            "push": way(f.push), "pull": way(f.pull)}  # fmt: skip


def _table(header: str, rows: Sequence[Sequence[object]]) -> str:
    """A markdown table: `header` names the columns, separated by " | "."""
    width = header.count(" | ") + 1
    lines = [header, *(" | ".join(map(str, row)) for row in rows)]
    return "\n".join([f"| {lines[0]} |", "|" + "---|" * width, *(f"| {x} |" for x in lines[1:])])


def heartbeat_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        "state | nodes x s | register s | calls ok / failed | p50 ms | p99 ms | max ms "
        "| SuperLink CPU % (us/call) | load-gen CPU % (us/call) | others' CPU % "
        "| send lag p99 ms | SuperLink RSS MiB | offline events"
    )
    cells = [(r["state"], f"{r['nodes']} x {r['seconds']:g}", r["register_s"],
              f"{r['ok']} / {r['failed']}", r["p50_ms"], r["p99_ms"], r["max_ms"],
              f"{r['superlink_cpu_pct']} ({r['superlink_us_per_call']})",
              f"{r['loadgen_cpu_pct']} ({r['loadgen_us_per_call']})", r["others_cpu_pct"],
              r["send_lag_p99_ms"], r["superlink_rss_mib"], r["offline_events"])
             for r in rows]  # fmt: skip
    errors = [f"- {r['state']}: {error}" for r in rows for error in r["errors"]]
    return "\n\n".join([_table(header, cells), *(["\n".join(errors)] if errors else [])])


def stream_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        "security | way | MiB/s median (min-max) | CPU %: SuperLink / client / others "
        "| SuperLink ms/MiB user + system | SuperLink minor faults/MiB "
        "| SuperLink RSS MiB idle -> peak"
    )
    cells = [(r["security"], name,
              f"{statistics.median(w['mib_s']):.0f} ({min(w['mib_s'])}-{max(w['mib_s'])})",
              f"{w['superlink_cpu_pct']} / {w['client_cpu_pct']} / {w['others_cpu_pct']}",
              f"{w['superlink_user_ms_per_mib']} + {w['superlink_system_ms_per_mib']}",
              w["superlink_faults_per_mib"],
              f"{r['superlink_idle_rss_mib']} -> {w['superlink_peak_rss_mib']}")
             for r in rows for name, w in (("push", r["push"]), ("pull", r["pull"]))]  # fmt: skip
    return _table(header, cells)


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"- machine: {os.cpu_count()} cores ({model}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB memory, {platform.platform()}; "
        f"load average at start {load} (the machine is shared: see the others' CPU columns)\n"
        f"- Python {platform.python_version()}; grpclib {version('grpclib')}; h2 "
        f"{version('h2')}; uvloop {version('uvloop')}; stamen {version('stamen')}"
    )


def report(args: argparse.Namespace, beats: list[dict[str, Any]],
           streams: list[dict[str, Any]], header: str, wall: float) -> str:  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [
        "# SuperLink performance",
        f"Written by `python -m benchmarks.superlink_bench` on {when}, in {wall:.0f} s.",
        header + (f"\n- SuperLink environment: {args.superlink_env}" if args.env else ""),
    ]
    if beats:
        parts += [
            f"## Heartbeats: {args.nodes} nodes at 1 Hz for {args.seconds:g} s",
            f"One load-generator process on uvloop with {args.channels} grpclib channels "
            "(an HTTP/2 connection each; nodes round-robin over them, calls multiplexed as "
            "streams); call i is sent at t0 + i/N, so the beats are spread evenly. The "
            "SuperLink runs with `--heartbeat-interval 1` (a liveness sweep every 0.5 s). "
            "CPU: user + system time from the first call sent to the last answered, in % of "
            "one core and per answered call; others': the rest of the machine meanwhile. "
            f"Send lag: how late the generator started a call. A call over {CALL_TIMEOUT:g} s "
            "fails.",
            heartbeat_table(beats),
        ]
    if streams:
        parts += [
            f"## Object streams: {args.object_mib} MiB up and down, {args.repeats} repeats",
            "Push: ServerAppIo.PushObject after creating a run and pushing an instruction "
            "that names the object to a registered node, as a ServerApp does. Pull: "
            "Fleet.PullObject as that node. ~1 MiB chunks, a new object each repeat, the "
            "SuperLink's state: sqlite, its default (objects live in files). "
            "CPU %, ms/MiB and faults/MiB are medians; peak RSS is the SuperLink's VmHWM, "
            "reset before each transfer.",
            stream_table(streams),
        ]
    return "\n\n".join(parts) + "\n"


# --- main -------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--nodes", type=int, default=1000)
    add("--seconds", type=float, default=20.0, help="of heartbeats, per state")
    add("--channels", type=int, default=10)
    add("--heartbeat-states", default="sqlite,memory", help="comma-separated: sqlite, memory")
    add("--object-mib", type=int, default=256)
    add("--repeats", type=int, default=3)
    add("--skip", choices=("heartbeats", "throughput"), action="append", default=[])
    add("--profile", type=Path, metavar="DIR", help="cProfile the SuperLink: DIR/<phase>.prof")
    add(
        "--superlink-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the SuperLink process only",
    )
    add("--out", type=Path, default=ROOT / "benchmarks" / "SUPERLINK.md")
    add("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    args.env = dict(item.split("=", 1) for item in args.superlink_env)
    return args  # fmt: skip


async def run(
    args: argparse.Namespace, tmp: Path, beats: list[dict[str, Any]], streams: list[dict[str, Any]]
) -> None:
    """Every phase in turn, each row appended to `beats` or `streams` as it is measured."""

    def options(state: str, phase: str) -> dict[str, Any]:
        workdir = Path(tempfile.mkdtemp(dir=tmp))
        profile = None
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            profile = args.profile.resolve() / f"{phase}.prof"
        database = ":memory:" if state == "memory" else str(workdir / "state.db")
        return {"workdir": workdir, "database": database, "profile": profile, "env": args.env}

    if "heartbeats" not in args.skip:
        for state in args.heartbeat_states.split(","):
            with superlink(**options(state, f"heartbeats-{state}"), certs=None,
                           heartbeat_interval=1.0) as link:  # fmt: skip
                figures = Heartbeats(state, args.nodes, args.seconds)
                beats.append(heartbeat_summary(await heartbeats(link, figures, args.channels)))
            print(heartbeat_table(beats[-1:]), flush=True)
    if "throughput" not in args.skip:
        certs = tmp / "certs"
        make_certs = ["bash", str(ROOT / "scripts" / "make-certs.sh"), str(certs)]
        process = await asyncio.create_subprocess_exec(*make_certs, stdout=subprocess.DEVNULL)
        if await process.wait() != 0:
            raise RuntimeError("scripts/make-certs.sh failed")
        state = "sqlite"
        for tls in (None, certs):
            name = "TLS" if tls else "insecure"
            with superlink(**options(state, f"streams-{name}"), certs=tls,
                           heartbeat_interval=5.0) as link:  # fmt: skip
                measured = await throughput(link, Streams(name, state, MiB * args.object_mib),
                                            args.repeats)  # fmt: skip
                streams.append(stream_summary(measured))
            print(stream_table(streams[-1:]), flush=True)


def write_report(out: Path, text: str) -> None:
    """Write `text` to `out`, keeping the notes below NOTES_MARKER in the file there."""
    notes = ""
    if out.exists():
        _, marker, notes = out.read_text().partition(NOTES_MARKER)
        notes = marker + notes
    out.write_text(text + ("\n" + notes if notes else ""))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    header = machine()
    began = time.perf_counter()
    beats: list[dict[str, Any]] = []
    streams: list[dict[str, Any]] = []

    async def bounded(tmp: Path) -> bool:
        try:
            async with asyncio.timeout(DEADLINE):
                await run(args, tmp, beats, streams)
        except TimeoutError:
            return False
        return True

    with tempfile.TemporaryDirectory(prefix="superlink-bench-") as tmp:
        complete = uvloop.run(bounded(Path(tmp)))
    text = report(args, beats, streams, header, time.perf_counter() - began)
    if not complete:
        text += f"\n**Incomplete**: the {DEADLINE:g} s deadline passed; the phases after "
        text += "the last table did not finish (the machine was too busy?).\n"
    write_report(args.out, text)
    if args.json is not None:
        args.json.write_text(json.dumps({"heartbeats": beats, "streams": streams}, indent=1))
    print(f"\n{text}\nwrote {args.out}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
