#!/usr/bin/env python3
"""Throughput/latency ratio of dynamo-server against redis-server.

Starts three servers on 127.0.0.1 (free ports, each in its own temp dir)
and runs the same redis-benchmark workloads on each, one server at a time:

  * redis-server, in memory       (--save "" --appendonly no)
  * redis-server, AOF everysec    (--save "" --appendonly yes --appendfsync everysec)
  * dynamo-server, single node    (sled engine, default durability)

Workloads: SET and GET, -c 50 -d 100 -r 100000, without pipelining and with
-P 16.  Every key of the 100k key space is preloaded before the runs, so GET
always hits.  Prints ops/s, p50, p99, p99.9 for every (workload, server), the
ratios dynamo/redis (GET against redis in memory, SET against redis AOF
everysec) against the targets, and the resident memory of each server.
With --rounds N (default 3) every workload runs N times per server, the
servers interleaved, and each figure is the median of its N runs.

Python 3.11 standard library only.  See benches/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

APT_HINT = "sudo apt-get install -y redis-server redis-tools"

# (workload label, redis-benchmark test, pipeline depth) in the order they run.
# SET first: the runs then GET keys that the SET runs (and the preload) wrote.
WORKLOADS = [
    ("SET", "set", 1),
    ("SET", "set", 16),
    ("GET", "get", 1),
    ("GET", "get", 16),
]

# Targets (see benches/README.md): minimum dynamo/redis ratio per pipeline depth,
# and the p99.9 bound without pipelining.
RATIO_TARGET = {1: 0.9, 16: 0.5}
P999_TARGET_MS = 2.0

# Which redis variant each command is compared against.
BASELINE = {"GET": "redis-mem", "SET": "redis-aof"}


# --------------------------------------------------------------------------- #
# servers


@dataclass
class Server:
    key: str  # short id: redis-mem, redis-aof, dynamo
    label: str  # shown in the tables
    kind: str  # "redis" or "dynamo"
    port: int = 0
    tmp: Path | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    log_file: object = None
    results: dict = field(default_factory=dict)  # (cmd, pipeline) -> Result
    memory: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


# dynamo-server's --engine (set from --engine).
DYNAMO_ENGINE = "sled"

SERVERS = [
    ("redis-mem", "redis (in memory)", "redis"),
    ("redis-aof", "redis (AOF everysec)", "redis"),
    ("dynamo", "dynamo (sled)", "dynamo"),
]


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (never 6379), from binding port 0."""
    socks, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            port = s.getsockname()[1]
            if port != 6379 and port not in ports:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def server_command(srv: Server, dynamo_bin: Path, peer_port: int) -> list[str]:
    assert srv.tmp is not None
    if srv.key == "redis-mem":
        return ["redis-server", "--port", str(srv.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(srv.tmp)]
    if srv.key == "redis-aof":
        return ["redis-server", "--port", str(srv.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                "--dir", str(srv.tmp)]
    # dynamo: --peer-port is given explicitly so that the default (port + 10000)
    # neither collides with anything nor overflows for a high ephemeral port.
    return [str(dynamo_bin), "--bind", "127.0.0.1", "--port", str(srv.port),
            "--peer-port", str(peer_port), "--data-dir", str(srv.tmp / "data"),
            "--loglevel", "warn", "--engine", DYNAMO_ENGINE]


def cli(port: int, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout)


def log_tail(srv: Server, lines: int = 20) -> str:
    try:
        text = srv.log_path.read_text(errors="replace") if srv.log_path else ""
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class BenchError(Exception):
    pass


PIPE_SUMMARY = re.compile(r"errors:\s*(\d+),\s*replies:\s*(\d+)")


def pipe_commands(port: int, chunks, expected: int, out_path: Path, timeout_s: float,
                  children: list, what: str) -> float:
    """Sends RESP commands (an iterable of byte chunks) through `redis-cli --pipe`.

    redis-cli's report goes to a file (it prints error replies as they arrive,
    and a full stdout pipe would stall it); it must say `errors: 0, replies:
    expected`.  The process is in `children` while it runs (the caller's
    cleanup list).  Returns the seconds taken.
    """
    t0 = time.monotonic()
    with open(out_path, "wb") as out:
        p = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
                             stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        children.append(p)
        try:
            for chunk in chunks:
                p.stdin.write(chunk)
                if time.monotonic() - t0 > timeout_s:
                    raise subprocess.TimeoutExpired(p.args, timeout_s)
            p.stdin.close()
            p.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0)))
        except BrokenPipeError:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
            raise BenchError(f"{what} through port {port} took more than {timeout_s:.0f}s")
        finally:
            children.remove(p)
    elapsed = time.monotonic() - t0
    text = out_path.read_text(errors="replace")
    m = PIPE_SUMMARY.search(text)
    if p.returncode != 0 or m is None:
        raise BenchError(f"redis-cli --pipe exited with status {p.returncode}:\n"
                         + "\n".join(text.splitlines()[-10:]))
    errors, replies = int(m.group(1)), int(m.group(2))
    if errors != 0 or replies != expected:
        raise BenchError(f"redis-cli --pipe: errors: {errors}, replies: {replies} for "
                         f"{expected} commands:\n" + "\n".join(text.splitlines()[-10:]))
    return elapsed


def start_server(srv: Server, cmd: list[str], wait_s: float = 30.0) -> None:
    assert srv.tmp is not None
    srv.log_path = srv.tmp / "server.log"
    srv.log_file = open(srv.log_path, "wb")
    # Own session: a Ctrl-C in the terminal reaches only this script, which
    # then stops the server itself (see stop_server).
    srv.proc = subprocess.Popen(cmd, stdout=srv.log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=srv.tmp,
                                start_new_session=True)
    deadline = time.monotonic() + wait_s
    while True:
        if srv.proc.poll() is not None:
            raise BenchError(f"{srv.label} exited with status {srv.proc.returncode} "
                             f"before answering PING; log:\n{log_tail(srv)}")
        try:
            r = cli(srv.port, "ping", timeout=2.0)
            if r.returncode == 0 and r.stdout.strip() == "PONG":
                return
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{srv.label} did not answer PING within {wait_s:.0f}s; "
                             f"log:\n{log_tail(srv)}")
        time.sleep(0.1)


def stop_server(srv: Server) -> None:
    p = srv.proc
    if p is not None and p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
        except ProcessLookupError:
            pass
    srv.proc = None
    if srv.log_file is not None:
        srv.log_file.close()
        srv.log_file = None


def proc_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def info_fields(port: int, section: str) -> dict[str, str]:
    try:
        r = cli(port, "info", section)
    except subprocess.TimeoutExpired:
        return {}
    out = {}
    for line in r.stdout.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def preload(port: int, keyspace: int, size: int, batch: int = 1000) -> None:
    """SET key:%012d for every key redis-benchmark -r KEYSPACE can produce.

    redis-benchmark replaces __rand_int__ with a 12-digit zero-padded number in
    [0, KEYSPACE), so after this every GET of the benchmark hits.  Pipelined
    over one connection; every reply must be +OK.
    """
    value = b"x" * size
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        f = s.makefile("rb")
        for start in range(0, keyspace, batch):
            end = min(start + batch, keyspace)
            buf = bytearray()
            for i in range(start, end):
                k = b"key:%012d" % i
                buf += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(k), k, len(value), value)
            s.sendall(buf)
            for _ in range(start, end):
                line = f.readline()
                if line != b"+OK\r\n":
                    raise BenchError(f"preload: unexpected reply {line[:200]!r}")


# --------------------------------------------------------------------------- #
# redis-benchmark


@dataclass
class Result:
    ok: bool
    rps: float | None = None
    avg: float | None = None
    p50: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None
    error: str = ""
    warnings: list = field(default_factory=list)


def log_result(what: str, res: "Result", suffix: str = "") -> None:
    """Logs one redis-benchmark run: its figures (then `suffix`) or its
    failure, then its warnings."""
    if res.ok:
        log(f"  {what}: {res.rps:,.0f} ops/s  "
            f"p50 {res.p50:.3f}  p99 {res.p99:.3f}  p99.9 {res.p999:.3f} ms{suffix}")
    else:
        log(f"  {what}: FAILED: {res.error}")
    for w in res.warnings:
        log(f"    redis-benchmark: {w}")


def dbsize(port: int) -> str | None:
    """`DBSIZE` of the server on `port`, or None if it did not answer one."""
    try:
        r = cli(port, "dbsize")
    except subprocess.TimeoutExpired:
        return None
    out = r.stdout.strip()
    return out if r.returncode == 0 and out.isdigit() else None


def median_result(results: list) -> "Result":
    """The median of each figure over the runs (a failed run fails the lot)."""
    failed = [r for r in results if not r.ok]
    if failed:
        return failed[0]

    def med(values):
        values = sorted(v for v in values if v is not None)
        return values[len(values) // 2] if values else None

    return Result(ok=True,
                  rps=med(r.rps for r in results), avg=med(r.avg for r in results),
                  p50=med(r.p50 for r in results), p99=med(r.p99 for r in results),
                  p999=med(r.p999 for r in results), max=med(r.max for r in results),
                  warnings=[w for r in results for w in r.warnings])


PCT_LINE = re.compile(r"^\s*([0-9.]+)% <= ([0-9.]+) milliseconds")
COMPLETED = re.compile(r"^\s*(\d+) requests completed in ([0-9.]+) seconds")
THROUGHPUT = re.compile(r"throughput summary:\s*([0-9.]+) requests per second")
# Lines that mean the run is not to be trusted (redis-benchmark 7 exits non-zero
# on an error reply, but check the text too).
ERROR_LINE = re.compile(r"\bERR\b|error|WRONGTYPE|NOAUTH|MOVED|LOADING|"
                        r"Connection refused|Could not connect", re.IGNORECASE)


def parse_benchmark(text: str, expected_requests: int) -> Result:
    """Parse the full (non -q, non --csv) output of redis-benchmark 7.x.

    Shape of the output (one test):

        ====== GET ======
          200000 requests completed in 1.23 seconds
          ...
        Latency by percentile distribution:
        0.000% <= 0.255 milliseconds (cumulative count 1)
        50.000% <= 1.167 milliseconds (cumulative count 503)
        ...
        99.902% <= 4.759 milliseconds (cumulative count 1000)
        100.000% <= 4.759 milliseconds (cumulative count 1000)

        Cumulative distribution of latencies:
        ...
        Summary:
          throughput summary: 26315.79 requests per second
          latency summary (msec):
                  avg       min       p50       p95       p99       max
                1.272     0.248     1.167     2.175     4.519     4.759

    ops/s, avg, p50, p99, max come from the summary; p99.9 is the first line of
    "Latency by percentile distribution" whose percentile is >= 99.9.
    """
    # Progress lines are separated by \r; make them lines of their own.
    lines = text.replace("\r", "\n").splitlines()
    res = Result(ok=True)
    completed = None
    in_pct = False
    pct_points: list[tuple[float, float]] = []
    header = None
    for i, line in enumerate(lines):
        m = COMPLETED.match(line)
        if m:
            completed = int(m.group(1))
        if line.startswith("Latency by percentile distribution"):
            in_pct = True
            continue
        if in_pct:
            m = PCT_LINE.match(line)
            if m:
                pct_points.append((float(m.group(1)), float(m.group(2))))
                continue
            if line.strip() == "":
                continue
            in_pct = False  # "Cumulative distribution of latencies:" etc.
        m = THROUGHPUT.search(line)
        if m:
            res.rps = float(m.group(1))
        if re.match(r"^\s*avg\s+min\s+p50", line):
            header = line.split()
            if i + 1 < len(lines):
                vals = lines[i + 1].split()
                if len(vals) == len(header):
                    summary = dict(zip(header, vals))
                    try:
                        res.avg = float(summary["avg"])
                        res.p50 = float(summary["p50"])
                        res.p99 = float(summary["p99"])
                        res.max = float(summary["max"])
                    except (KeyError, ValueError):
                        pass
    for pct, ms in pct_points:
        if pct >= 99.9:
            res.p999 = ms
            break
    problems = []
    if completed is None:
        problems.append("no 'requests completed' line")
    elif completed != expected_requests:
        problems.append(f"{completed} of {expected_requests} requests completed")
    if res.rps is None:
        problems.append("no throughput summary")
    if res.p50 is None or res.p99 is None:
        problems.append("no latency summary")
    if res.p999 is None:
        problems.append("no p99.9 in 'Latency by percentile distribution'")
    if problems:
        res.ok = False
        res.error = "; ".join(problems)
    return res


def run_benchmark(port: int, test: str, pipeline: int, requests: int,
                  args: argparse.Namespace) -> tuple[Result, str]:
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
           "-t", test, "-n", str(requests), "-c", str(args.clients),
           "-d", str(args.data_size), "-r", str(args.keyspace)]
    if pipeline > 1:
        cmd += ["-P", str(pipeline)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                           timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return Result(ok=False, error=f"timed out after {args.timeout}s"), " ".join(cmd)
    res = parse_benchmark(r.stdout, requests)
    bad = [ln.strip() for ln in (r.stdout + "\n" + r.stderr).replace("\r", "\n").splitlines()
           if ERROR_LINE.search(ln)]
    res.warnings = [ln.strip() for ln in r.stderr.splitlines()
                    if ln.strip() and not ERROR_LINE.search(ln)]
    problems = []
    if r.returncode != 0:
        problems.append(f"redis-benchmark exited with status {r.returncode}")
    if bad:
        problems.append("error output: " + " | ".join(bad[:5]))
    if res.error:
        problems.append(res.error)
    if problems:
        res.ok = False
        res.error = "; ".join(problems)
    return res, " ".join(cmd)


# --------------------------------------------------------------------------- #
# report


def machine_line() -> str:
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 0
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{ncpu} CPUs (nproc), {model}, {platform.system()} {platform.release()}, {now}"


def tool_versions() -> str:
    def first_line(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    rs = first_line(["redis-server", "--version"])
    m = re.search(r"v=(\S+)", rs)
    rb = first_line(["redis-benchmark", "--version"])
    return f"redis-server {m.group(1) if m else rs}, {rb}"


def fmt_num(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def fmt_kib(kib: int | None) -> str:
    if kib is None:
        return "-"
    return f"{kib / 1024:.1f} MiB"


def render_table(headers: list[str], rows: list[list[str]], markdown: bool,
                 right: set[int]) -> str:
    if markdown:
        out = ["| " + " | ".join(headers) + " |",
               "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def report(servers: list[Server], args: argparse.Namespace, dynamo_bin: Path,
           params: str) -> str:
    md = args.markdown
    by_key = {s.key: s for s in servers}
    parts = []
    parts.append(("**Machine:** " if md else "Machine:   ") + machine_line())
    parts.append(("**Tools:** " if md else "Tools:     ") + tool_versions()
                 + f", dynamo-server {by_key['dynamo'].info.get('dynamo_version', '?') if 'dynamo' in by_key else '?'}"
                 + f" ({dynamo_bin})")
    parts.append(("**Workload:** " if md else "Workload:  ") + params)
    parts.append("")

    # 1. per (workload, server)
    headers = ["workload", "server", "ops/s", "p50 ms", "p99 ms", "p99.9 ms"]
    rows = []
    for name, test, pipe in WORKLOADS:
        for s in servers:
            r = s.results.get((test, pipe))
            wl = f"{name} P{pipe}"
            if r is None:
                continue
            if not r.ok:
                rows.append([wl, s.label, "FAILED", "-", "-", "-"])
                continue
            rows.append([wl, s.label, fmt_num(r.rps, ",.0f"), fmt_num(r.p50, ".3f"),
                         fmt_num(r.p99, ".3f"), fmt_num(r.p999, ".3f")])
    if md:
        parts.append("#### Throughput and latency")
        parts.append("")
    parts.append(render_table(headers, rows, md, right={2, 3, 4, 5}))
    parts.append("")

    # 2. ratios against the targets
    if "dynamo" in by_key:
        d = by_key["dynamo"]
        headers = ["workload", "baseline", "dynamo/redis ops/s", "target", "met",
                   "dynamo p99.9 ms", "p99.9 target", "met"]
        rows = []
        for name, test, pipe in WORKLOADS:
            base = by_key.get(BASELINE[name])
            dr = d.results.get((test, pipe))
            br = base.results.get((test, pipe)) if base else None
            ratio = None
            if dr and br and dr.ok and br.ok and dr.rps and br.rps:
                ratio = dr.rps / br.rps
            tgt = RATIO_TARGET[pipe]
            met = "-" if ratio is None else ("yes" if ratio >= tgt else "NO")
            if pipe == 1:
                p999 = dr.p999 if dr and dr.ok else None
                p_tgt = f"< {P999_TARGET_MS:g}"
                p_met = "-" if p999 is None else ("yes" if p999 < P999_TARGET_MS else "NO")
            else:
                p999 = dr.p999 if dr and dr.ok else None
                p_tgt, p_met = "(none)", "-"
            rows.append([f"{name} P{pipe}", base.label if base else BASELINE[name],
                         "-" if ratio is None else f"{ratio:.2f}x", f">= {tgt:g}x", met,
                         fmt_num(p999, ".3f"), p_tgt, p_met])
        if md:
            parts.append("#### Ratios against the targets")
            parts.append("")
        parts.append(render_table(headers, rows, md, right={2, 5}))
        parts.append("")

    # 3. memory after the runs
    headers = ["server", "keys", "VmRSS (/proc)", "INFO used_memory_rss", "INFO used_memory"]
    rows = []
    for s in servers:
        m = s.memory
        rss_info = m.get("used_memory_rss")
        used = m.get("used_memory")
        rows.append([s.label, m.get("dbsize", "-"), fmt_kib(m.get("vmrss_kib")),
                     "-" if rss_info is None else fmt_kib(rss_info // 1024),
                     "-" if used is None else fmt_kib(used // 1024)])
    if md:
        parts.append("#### Memory after the runs")
        parts.append("")
    else:
        parts.append("Memory after the runs:")
    parts.append(render_table(headers, rows, md, right={1, 2, 3, 4}))

    failures = [(s, k, r) for s in servers for k, r in s.results.items() if not r.ok]
    if failures:
        parts.append("")
        parts.append("FAILED runs:")
        for s, (test, pipe), r in failures:
            parts.append(f"  {s.label} {test.upper()} P{pipe}: {r.error}")
    return "\n".join(parts)


# --------------------------------------------------------------------------- #
# main


def default_bin() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else REPO_ROOT / "target"
    if not base.is_absolute():
        base = REPO_ROOT / base
    return base / "release" / "dynamo-server"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare dynamo-server with redis-server using redis-benchmark.")
    p.add_argument("--bin", type=Path, default=None,
                   help="dynamo-server binary (default: target/release/dynamo-server "
                        "of this repository)")
    p.add_argument("--requests", type=int, default=None,
                   help="-n for the runs without pipelining (default 200000; 20000 with --quick)")
    p.add_argument("--pipelined-requests", type=int, default=None,
                   help="-n for the -P 16 runs (default 2000000; 100000 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="small -n for a smoke run; the numbers are not meaningful")
    p.add_argument("--rounds", type=int, default=None,
                   help="runs of each workload per server, interleaved; figures are the "
                        "medians (default 3; 1 with --quick)")
    p.add_argument("--markdown", action="store_true",
                   help="print the tables in Markdown (for benches/README.md)")
    p.add_argument("--clients", type=int, default=50, help="-c (default 50)")
    p.add_argument("--data-size", type=int, default=100, help="-d (default 100)")
    p.add_argument("--keyspace", type=int, default=100000, help="-r (default 100000)")
    p.add_argument("--pipeline", type=int, default=16,
                   help="-P of the pipelined runs (default 16)")
    p.add_argument("--servers", default="redis-mem,redis-aof,dynamo",
                   help="comma-separated subset of redis-mem,redis-aof,dynamo")
    p.add_argument("--timeout", type=float, default=900,
                   help="seconds before one redis-benchmark run counts as failed")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the servers' temp dirs (data, AOF, logs)")
    p.add_argument("--engine", default="sled", choices=["sled", "aof", "memory"],
                   help="dynamo-server's storage engine (default sled)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print each redis-benchmark command as it runs")
    a = p.parse_args(argv)
    if a.rounds is None:
        a.rounds = 1 if a.quick else 3
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.requests is None:
        a.requests = 20000 if a.quick else 200000
    if a.pipelined_requests is None:
        a.pipelined_requests = 100000 if a.quick else 2000000
    return a


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    missing = [t for t in ("redis-server", "redis-benchmark", "redis-cli")
               if shutil.which(t) is None]
    if missing:
        print(f"error: {', '.join(missing)} not found on PATH; install them with:\n"
              f"    {APT_HINT}", file=sys.stderr)
        return 2

    wanted = [w.strip() for w in args.servers.split(",") if w.strip()]
    known = {k for k, _, _ in SERVERS}
    if not wanted or any(w not in known for w in wanted):
        print(f"error: --servers takes a subset of {','.join(sorted(known))}", file=sys.stderr)
        return 2

    dynamo_bin = (args.bin or default_bin()).resolve() if "dynamo" in wanted else Path("-")
    if "dynamo" in wanted and not (dynamo_bin.is_file() and os.access(dynamo_bin, os.X_OK)):
        print(f"error: {dynamo_bin} not found; build it first with:\n"
              f"    cargo build --release --bin dynamo-server\n"
              f"(or pass --bin PATH)", file=sys.stderr)
        return 2

    if args.pipeline < 2:
        print("error: --pipeline must be at least 2", file=sys.stderr)
        return 2
    global WORKLOADS
    if args.pipeline != 16:
        WORKLOADS = [(n, t, args.pipeline if p > 1 else 1) for n, t, p in WORKLOADS]
        RATIO_TARGET[args.pipeline] = RATIO_TARGET.pop(16)

    global DYNAMO_ENGINE
    DYNAMO_ENGINE = args.engine
    servers = [Server(key=k, label=l.replace("(sled)", f"({args.engine})"), kind=kind)
               for k, l, kind in SERVERS if k in wanted]
    params = (f"redis-benchmark -c {args.clients} -d {args.data_size} -r {args.keyspace}; "
              f"-n {args.requests} without pipelining, -n {args.pipelined_requests} "
              f"with -P {args.pipeline}; {args.keyspace} keys preloaded; "
              f"{args.rounds} round(s), servers interleaved, medians shown"
              + ("; QUICK SMOKE RUN (numbers not meaningful)" if args.quick else ""))

    # SIGTERM/SIGHUP behave like Ctrl-C: unwind through the finally below.
    def _interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # even if started with SIGINT ignored

    root = Path(tempfile.mkdtemp(prefix="dynamo-ratio-"))
    status = 0
    try:
        for srv in servers:
            srv.tmp = root / srv.key
            srv.tmp.mkdir()
            srv.port, peer_port = free_ports(2)
            cmd = server_command(srv, dynamo_bin, peer_port)
            log(f"starting {srv.label} on port {srv.port}")
            start_server(srv, cmd)
            srv.info = info_fields(srv.port, "server")
            log(f"  preloading {args.keyspace} keys of {args.data_size} bytes")
            t0 = time.monotonic()
            preload(srv.port, args.keyspace, args.data_size)
            log(f"  preloaded in {time.monotonic() - t0:.1f}s")
        # Rounds interleave the servers workload by workload, so a slow spell
        # of the machine hits them alike; each figure is the median of the
        # rounds (one run per round and server).
        runs: dict = {}
        for round_no in range(1, args.rounds + 1):
            if args.rounds > 1:
                log(f"round {round_no} of {args.rounds}")
            for name, test, pipe in WORKLOADS:
                n = args.requests if pipe == 1 else args.pipelined_requests
                for srv in servers:
                    res, cmdline = run_benchmark(srv.port, test, pipe, n, args)
                    if args.verbose:
                        log(f"  $ {cmdline}")
                    log_result(f"{srv.label} {name} P{pipe}", res)
                    runs.setdefault((srv.key, test, pipe), []).append(res)
                    if srv.proc is not None and srv.proc.poll() is not None:
                        raise BenchError(f"{srv.label} exited with status "
                                         f"{srv.proc.returncode} during {name} P{pipe}; "
                                         f"log:\n{log_tail(srv)}")
        for srv in servers:
            for _, test, pipe in WORKLOADS:
                srv.results[(test, pipe)] = median_result(runs[(srv.key, test, pipe)])
            # memory after the runs
            mem = info_fields(srv.port, "memory")
            for k in ("used_memory_rss", "used_memory"):
                try:
                    srv.memory[k] = int(mem[k])
                except (KeyError, ValueError):
                    pass
            srv.memory["vmrss_kib"] = proc_rss_kib(srv.proc.pid)
            if (size := dbsize(srv.port)) is not None:
                srv.memory["dbsize"] = size
            stop_server(srv)
        print()
        print(report(servers, args, dynamo_bin, params))
        if any(not r.ok for s in servers for r in s.results.values()):
            status = 1
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the servers", file=sys.stderr)
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        for srv in servers:
            stop_server(srv)
        if args.keep_tmp:
            print(f"temp dirs kept under {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
