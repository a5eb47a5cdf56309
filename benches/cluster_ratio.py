#!/usr/bin/env python3
"""Throughput/latency ratio of a local 3-node dynamo cluster against redis-server.

Starts on 127.0.0.1 (free ports, each in its own temp dir):

  * redis-server, in memory       (--save "" --appendonly no)
  * a 3-node dynamo-server cluster, N=3 R=2 W=2, for each engine asked for
    (--engine sled|aof|memory; by default all three, a cluster each: sled
    is the default on-disk engine, aof the log-structured one that keeps its
    data in memory like redis with appendonly, memory keeps nothing)

and runs the same redis-benchmark workloads on each: SET and GET,
-c 50 -d 100 -r 100000, without pipelining and with -P 16.  Every key of the
100k key space is preloaded first (through node 1 for the cluster), so GET
always hits.  By default all the cluster traffic goes into node 1, which then
coordinates every request; --round-robin splits the clients over the three
nodes instead (three concurrent redis-benchmark processes, ops/s summed,
latencies the worst of the three).  With --rounds N (default 3) every
workload runs N times per server, the servers taking turns workload by
workload (all of them stay up, idle while another runs), and each figure is
the median of its N runs: single runs on a shared 2-core machine move by
tens of percent.

Prints ops/s, p50, p99, p99.9 per (workload, server), the cluster/redis ratios
against the targets (>= 0.65x without pipelining, >= 0.3x with -P 16, p99 < 2 ms
without pipelining), each node's resident memory and node 1's INFO dynamo
counters.

Python 3.11 standard library only; shares its helpers with ratio.py.  See
benches/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True  # no benches/__pycache__ from importing ratio.py

from ratio import (  # noqa: E402  (after the sys.path change)
    APT_HINT,
    ERROR_LINE,
    BenchError,
    Result,
    Server,
    cli,
    dbsize,
    median_result,
    default_bin,
    fmt_kib,
    fmt_num,
    free_ports,
    info_fields,
    log,
    log_result,
    log_tail,
    machine_line,
    parse_benchmark,
    preload,
    proc_rss_kib,
    render_table,
    run_benchmark,
    start_server,
    stop_server,
    tool_versions,
)

# (workload label, redis-benchmark test, pipeline depth) in the order they run.
# SET first: the GET runs then read keys that the SET runs (and the preload) wrote.
WORKLOADS = [
    ("SET", "set", 1),
    ("SET", "set", 16),
    ("GET", "get", 1),
    ("GET", "get", 16),
]

# Targets: minimum cluster/redis-in-memory ratio per pipeline depth, and the
# cluster's p99 bound without pipelining.
RATIO_TARGET = {1: 0.65, 16: 0.3}
P99_TARGET_MS = 2.0

ENGINES = ("sled", "aof", "memory")
NODES = 3
N, R, W = 3, 2, 2
CONVERGE_TIMEOUT_S = 30.0

# INFO dynamo counters reported for the cluster nodes.
DYNAMO_COUNTERS = ("read_repairs", "writes_forwarded", "quorum_failures")


@dataclass
class ClusterRun:
    engine: str
    label: str
    nodes: list = field(default_factory=list)  # [Server], node 1 first
    peer_ports: list = field(default_factory=list)
    results: dict = field(default_factory=dict)  # (test, pipeline) -> Result
    node_info: list = field(default_factory=list)  # per node: dict of figures


# --------------------------------------------------------------------------- #
# cluster


def node_command(dynamo_bin: Path, node: Server, peer_port: int, seed_peer_port: int,
                 engine: str) -> list[str]:
    assert node.tmp is not None
    return [str(dynamo_bin), "--bind", "127.0.0.1", "--port", str(node.port),
            "--peer-port", str(peer_port), "--data-dir", str(node.tmp / "data"),
            "--n", str(N), "--r", str(R), "--w", str(W),
            "--seeds", f"127.0.0.1:{seed_peer_port}",
            "--engine", engine, "--loglevel", "warn"]


def dynamo_status(port: int) -> dict[str, str]:
    """DYNAMO STATUS as name -> value.

    In RESP2 the reply is a flat array, which redis-cli (not on a tty) prints as
    one line per element: a name, then its value.  `transfers` (an array) comes
    last, so pairing the lines in order is safe for every field before it.
    """
    try:
        r = cli(port, "DYNAMO", "STATUS", timeout=3.0)
    except subprocess.TimeoutExpired:
        return {}
    if r.returncode != 0:
        return {}
    lines = r.stdout.splitlines()
    return {lines[i].strip(): lines[i + 1].strip() for i in range(0, len(lines) - 1, 2)}


def wait_converged(cluster: ClusterRun, timeout_s: float = CONVERGE_TIMEOUT_S) -> float:
    """Waits until every node reports members = 3, the same ring_digest and
    no ring change in progress (transition none)."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while True:
        for node in cluster.nodes:
            if node.proc is not None and node.proc.poll() is not None:
                raise BenchError(f"{node.label} exited with status {node.proc.returncode} "
                                 f"while the cluster formed; log:\n{log_tail(node)}")
        statuses = [dynamo_status(n.port) for n in cluster.nodes]
        digests = {s.get("ring_digest") for s in statuses}
        if (all(s.get("members") == str(NODES) and s.get("transition", "none") == "none"
                for s in statuses)
                and len(digests) == 1 and None not in digests):
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            seen = "\n".join(
                f"  {n.label}: members={s.get('members', '?')} "
                f"ring_digest={s.get('ring_digest', '?')} "
                f"ring_version={s.get('ring_version', '?')}"
                for n, s in zip(cluster.nodes, statuses))
            tails = "\n".join(f"--- {n.label} log tail:\n{log_tail(n) or '(empty)'}"
                              for n in cluster.nodes)
            raise BenchError(f"the cluster did not converge within {timeout_s:.0f}s "
                             f"(every node must report members={NODES} and the same "
                             f"ring_digest in DYNAMO STATUS):\n{seen}\n{tails}")
        time.sleep(0.1)


def start_cluster(cluster: ClusterRun, root: Path, dynamo_bin: Path) -> None:
    ports = free_ports(2 * NODES)
    client_ports, peer_ports = ports[:NODES], ports[NODES:]
    cluster.peer_ports = peer_ports
    for i in range(NODES):
        node = Server(key=f"{cluster.engine}-n{i + 1}",
                      label=f"{cluster.label} node {i + 1}", kind="dynamo")
        node.tmp = root / f"n{i + 1}"
        node.tmp.mkdir(parents=True)
        node.port = client_ports[i]
        cluster.nodes.append(node)
    for i, node in enumerate(cluster.nodes):
        cmd = node_command(dynamo_bin, node, peer_ports[i], peer_ports[0], cluster.engine)
        log(f"  starting node {i + 1} on port {node.port} (peer port {peer_ports[i]})")
        start_server(node, cmd)  # waits for PONG
    waited = wait_converged(cluster)
    log(f"  cluster converged ({NODES} members, one ring digest) after {waited:.1f}s")
    cluster.nodes[0].info = info_fields(cluster.nodes[0].port, "server")


def check_alive(servers: list[Server], during: str) -> None:
    for s in servers:
        if s.proc is not None and s.proc.poll() is not None:
            raise BenchError(f"{s.label} exited with status {s.proc.returncode} "
                             f"during {during}; log:\n{log_tail(s)}")


# --------------------------------------------------------------------------- #
# redis-benchmark over the three nodes at once


def split(total: int, parts: int) -> list[int]:
    """total split into `parts` integers that differ by at most one, largest first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def run_round_robin(ports: list[int], test: str, pipeline: int, requests: int,
                    args: argparse.Namespace) -> tuple[Result, list[str]]:
    """Runs one redis-benchmark per port concurrently, clients and requests split.

    Returns the combined result: ops/s summed, p50/p99/p99.9 the worst of the
    runs; it fails if any run fails.
    """
    clients = split(args.clients, len(ports))
    # redis-benchmark -P p completes requests in batches of p (-n 33333 -P 16
    # completes 33344), so each share is a multiple of the pipeline depth.
    reqs = [k * pipeline for k in split(requests // pipeline, len(ports))]
    procs, cmds = [], []
    for port, c, n in zip(ports, clients, reqs):
        cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
               "-t", test, "-n", str(n), "-c", str(c),
               "-d", str(args.data_size), "-r", str(args.keyspace)]
        if pipeline > 1:
            cmd += ["-P", str(pipeline)]
        cmds.append(" ".join(cmd))
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, text=True, errors="replace"))
    deadline = time.monotonic() + args.timeout
    outputs: list[tuple[str, str, int | None]] = []
    try:
        for p in procs:
            try:
                out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
                outputs.append((out, err, p.returncode))
            except subprocess.TimeoutExpired:
                outputs.append(("", "", None))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    parts: list[Result] = []
    for (out, err, rc), n, port in zip(outputs, reqs, ports):
        if rc is None:
            parts.append(Result(ok=False, error=f"port {port}: timed out after {args.timeout}s"))
            continue
        res = parse_benchmark(out, n)
        bad = [ln.strip() for ln in (out + "\n" + err).replace("\r", "\n").splitlines()
               if ERROR_LINE.search(ln)]
        res.warnings = [ln.strip() for ln in err.splitlines()
                        if ln.strip() and not ERROR_LINE.search(ln)]
        problems = []
        if rc != 0:
            problems.append(f"redis-benchmark exited with status {rc}")
        if bad:
            problems.append("error output: " + " | ".join(bad[:5]))
        if res.error:
            problems.append(res.error)
        if problems:
            res.ok = False
            res.error = f"port {port}: " + "; ".join(problems)
        parts.append(res)
    combined = Result(ok=all(r.ok for r in parts))
    if sum(reqs) != requests:
        combined.warnings.append(f"ran {sum(reqs)} requests in all, not {requests}: "
                                 f"each share is a multiple of -P {pipeline}")
    combined.warnings += [w for r in parts for w in r.warnings]
    if not combined.ok:
        combined.error = " / ".join(r.error for r in parts if not r.ok)
        return combined, cmds
    combined.rps = sum(r.rps for r in parts)
    combined.p50 = max(r.p50 for r in parts)
    combined.p99 = max(r.p99 for r in parts)
    combined.p999 = max(r.p999 for r in parts)
    combined.max = max((r.max for r in parts if r.max is not None), default=None)
    return combined, cmds


def run_workload(label: str, ports: list[int], watched: list[Server], workload: tuple,
                 args: argparse.Namespace) -> Result:
    """Runs one (name, test, pipeline) workload against `ports`."""
    name, test, pipe = workload
    n = args.requests if pipe == 1 else args.pipelined_requests
    if len(ports) == 1:
        res, cmdline = run_benchmark(ports[0], test, pipe, n, args)
        cmdlines = [cmdline]
    else:
        res, cmdlines = run_round_robin(ports, test, pipe, n, args)
    if args.verbose:
        for c in cmdlines:
            log(f"  $ {c}")
    log_result(f"{label} {name} P{pipe}", res)
    check_alive(watched, f"{label} {name} P{pipe}")
    return res


# --------------------------------------------------------------------------- #
# report


def report(redis: Server, clusters: list[ClusterRun], args: argparse.Namespace,
           dynamo_bin: Path, params: str, mode: str) -> str:
    md = args.markdown
    parts = []
    version = next((c.nodes[0].info.get("dynamo_version") for c in clusters
                    if c.nodes and c.nodes[0].info.get("dynamo_version")), "?")
    parts.append(("**Machine:** " if md else "Machine:   ") + machine_line())
    parts.append(("**Tools:** " if md else "Tools:     ") + tool_versions()
                 + f", dynamo-server {version} ({dynamo_bin})")
    parts.append(("**Cluster:** " if md else "Cluster:   ")
                 + f"{NODES} dynamo-server nodes on 127.0.0.1, --n {N} --r {R} --w {W}, "
                 + "engine " + " and ".join(c.engine for c in clusters)
                 + " (a cluster per engine), other settings default")
    parts.append(("**Traffic:** " if md else "Traffic:   ") + mode)
    parts.append(("**Workload:** " if md else "Workload:  ") + params)
    parts.append(("**Rounds:** " if md else "Rounds:    ")
                 + f"{args.rounds}, servers taking turns workload by workload; "
                 + ("medians shown" if args.rounds > 1 else "one run each"))
    parts.append("")

    # 1. per (workload, server)
    headers = ["workload", "server", "ops/s", "p50 ms", "p99 ms", "p99.9 ms"]
    rows = []
    labelled = [(redis.label, redis.results)] + [(c.label, c.results) for c in clusters]
    for name, test, pipe in WORKLOADS:
        for label, results in labelled:
            r = results.get((test, pipe))
            wl = f"{name} P{pipe}"
            if r is None:
                continue
            if not r.ok:
                rows.append([wl, label, "FAILED", "-", "-", "-"])
                continue
            rows.append([wl, label, fmt_num(r.rps, ",.0f"), fmt_num(r.p50, ".3f"),
                         fmt_num(r.p99, ".3f"), fmt_num(r.p999, ".3f")])
    if md:
        parts.append("#### Throughput and latency")
        parts.append("")
    parts.append(render_table(headers, rows, md, right={2, 3, 4, 5}))
    parts.append("")

    # 2. ratios against the targets
    headers = ["workload", "cluster", "cluster/redis ops/s", "target", "result",
               "cluster p99 ms", "p99 target", "result"]
    rows = []
    for name, test, pipe in WORKLOADS:
        br = redis.results.get((test, pipe))
        for c in clusters:
            cr = c.results.get((test, pipe))
            ratio = None
            if cr and br and cr.ok and br.ok and cr.rps and br.rps:
                ratio = cr.rps / br.rps
            tgt = RATIO_TARGET[pipe]
            met = "-" if ratio is None else ("PASS" if ratio >= tgt else "MISS")
            p99 = cr.p99 if cr and cr.ok else None
            if pipe == 1:
                p_tgt = f"< {P99_TARGET_MS:g}"
                p_met = "-" if p99 is None else ("PASS" if p99 < P99_TARGET_MS else "MISS")
            else:
                p_tgt, p_met = "(none)", "-"
            rows.append([f"{name} P{pipe}", c.label,
                         "-" if ratio is None else f"{ratio:.2f}x", f">= {tgt:g}x", met,
                         fmt_num(p99, ".3f"), p_tgt, p_met])
    if md:
        parts.append("#### Ratios against the targets (baseline: redis in memory)")
        parts.append("")
    else:
        parts.append("Ratios against the targets (baseline: redis in memory):")
    parts.append(render_table(headers, rows, md, right={2, 5}))
    parts.append("")

    # 3. memory and counters after the runs
    headers = ["server", "node", "keys", "VmRSS (/proc)"] + list(DYNAMO_COUNTERS)
    rows = [[redis.label, "-", redis.memory.get("dbsize", "-"),
             fmt_kib(redis.memory.get("vmrss_kib"))] + ["-"] * len(DYNAMO_COUNTERS)]
    for c in clusters:
        for i, info in enumerate(c.node_info):
            rows.append([c.label, str(i + 1), info.get("keys", "-"), fmt_kib(info.get("vmrss_kib"))]
                        + [info.get(k, "-") for k in DYNAMO_COUNTERS])
    if md:
        parts.append("#### Memory and INFO dynamo counters after the runs")
        parts.append("")
    else:
        parts.append("Memory and INFO dynamo counters after the runs:")
    parts.append(render_table(headers, rows, md, right=set(range(2, len(headers)))))
    parts.append("")
    parts.append("keys: DBSIZE for redis, `keys` of DYNAMO STATUS (keys stored on that "
                 "replica) for the nodes. Counters from INFO dynamo; node 1 coordinated "
                 + ("a third of the requests." if args.round_robin else "every request."))

    failures = [(label, k, r) for label, results in labelled
                for k, r in results.items() if not r.ok]
    if failures:
        parts.append("")
        parts.append("FAILED runs:")
        for label, (test, pipe), r in failures:
            parts.append(f"  {label} {test.upper()} P{pipe}: {r.error}")
    return "\n".join(parts)


# --------------------------------------------------------------------------- #
# main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare a local 3-node dynamo cluster (N=3, R=2, W=2) with "
                    "redis-server (in memory) using redis-benchmark.")
    p.add_argument("--bin", type=Path, default=None,
                   help="dynamo-server binary (default: target/release/dynamo-server "
                        "of this repository)")
    p.add_argument("--requests", type=int, default=None,
                   help="-n for the runs without pipelining (default 200000; 20000 with --quick)")
    p.add_argument("--pipelined-requests", type=int, default=None,
                   help="-n for the pipelined runs (default 1000000; 100000 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="small -n for a smoke run; the numbers are not meaningful")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="storage engine of the cluster nodes (default: all "
                        "three, a cluster each)")
    p.add_argument("--round-robin", action="store_true",
                   help="split the clients over the three nodes (three concurrent "
                        "redis-benchmark processes) instead of sending all to node 1")
    p.add_argument("--rounds", type=int, default=None,
                   help="runs of each workload per server, servers interleaved, "
                        "medians shown (default 3; 1 with --quick)")
    p.add_argument("--markdown", action="store_true",
                   help="print the tables in Markdown (for benches/README.md)")
    p.add_argument("--clients", type=int, default=50, help="-c (default 50)")
    p.add_argument("--data-size", type=int, default=100, help="-d (default 100)")
    p.add_argument("--keyspace", type=int, default=100000, help="-r (default 100000)")
    p.add_argument("--pipeline", type=int, default=16,
                   help="-P of the pipelined runs (default 16)")
    p.add_argument("--timeout", type=float, default=900,
                   help="seconds before one redis-benchmark run counts as failed")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the temp dirs (data, server logs)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print each redis-benchmark command as it runs")
    a = p.parse_args(argv)
    if a.requests is None:
        a.requests = 20000 if a.quick else 200000
    if a.pipelined_requests is None:
        a.pipelined_requests = 100000 if a.quick else 1000000
    if a.rounds is None:
        a.rounds = 1 if a.quick else 3
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    return a


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    missing = [t for t in ("redis-server", "redis-benchmark", "redis-cli")
               if shutil.which(t) is None]
    if missing:
        print(f"error: {', '.join(missing)} not found on PATH; install them with:\n"
              f"    {APT_HINT}", file=sys.stderr)
        return 2

    dynamo_bin = (args.bin or default_bin()).resolve()
    if not (dynamo_bin.is_file() and os.access(dynamo_bin, os.X_OK)):
        print(f"error: {dynamo_bin} not found; build it first with:\n"
              f"    cargo build --release --bin dynamo-server\n"
              f"(or pass --bin PATH)", file=sys.stderr)
        return 2

    if args.pipeline < 2:
        print("error: --pipeline must be at least 2", file=sys.stderr)
        return 2
    if args.round_robin and args.clients < NODES:
        print(f"error: --round-robin needs --clients >= {NODES}", file=sys.stderr)
        return 2
    global WORKLOADS
    if args.pipeline != 16:
        WORKLOADS = [(n, t, args.pipeline if p > 1 else 1) for n, t, p in WORKLOADS]
        RATIO_TARGET[args.pipeline] = RATIO_TARGET.pop(16)

    engines = [args.engine] if args.engine else list(ENGINES)
    if args.round_robin:
        cs = "/".join(map(str, split(args.clients, NODES)))
        mode = (f"round-robin: {NODES} concurrent redis-benchmark processes, one per node, "
                f"-c {cs}, a third of -n each; ops/s summed, latencies the worst of the "
                f"three (redis: one redis-benchmark with -c {args.clients})")
    else:
        mode = (f"all clients into node 1 (one redis-benchmark -c {args.clients} "
                f"against node 1's port; node 1 coordinates every request)")
    params = (f"redis-benchmark -c {args.clients} -d {args.data_size} -r {args.keyspace}; "
              f"-n {args.requests} without pipelining, -n {args.pipelined_requests} "
              f"with -P {args.pipeline}; {args.keyspace} keys preloaded"
              + (" (through node 1 for the cluster)")
              + ("; QUICK SMOKE RUN (numbers not meaningful)" if args.quick else ""))

    # SIGTERM/SIGHUP behave like Ctrl-C: unwind through the finally below.
    def _interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # even if started with SIGINT ignored

    root = Path(tempfile.mkdtemp(prefix="dynamo-cluster-ratio-"))
    redis = Server(key="redis-mem", label="redis (in memory)", kind="redis")
    clusters = [ClusterRun(engine=e, label=f"cluster ({e})") for e in engines]
    status = 0
    try:
        # 1. redis in memory
        redis.tmp = root / "redis-mem"
        redis.tmp.mkdir()
        redis.port = free_ports(1)[0]
        log(f"starting {redis.label} on port {redis.port}")
        start_server(redis, ["redis-server", "--port", str(redis.port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(redis.tmp)])
        log(f"  preloading {args.keyspace} keys of {args.data_size} bytes")
        t0 = time.monotonic()
        preload(redis.port, args.keyspace, args.data_size)
        log(f"  preloaded in {time.monotonic() - t0:.1f}s")

        # 2. a cluster per engine, all up at once (idle while another runs)
        for c in clusters:
            log(f"starting {c.label}: {NODES} nodes, N={N} R={R} W={W}")
            start_cluster(c, root / f"cluster-{c.engine}", dynamo_bin)
            node1 = c.nodes[0]
            log(f"  preloading {args.keyspace} keys of {args.data_size} bytes through node 1")
            t0 = time.monotonic()
            preload(node1.port, args.keyspace, args.data_size)
            log(f"  preloaded in {time.monotonic() - t0:.1f}s")
            check_alive(c.nodes, f"{c.label} preload")

        # 3. the workloads, servers taking turns; medians over the rounds
        targets = [(redis.label, [redis.port], [redis], redis.results)]
        for c in clusters:
            ports = [n.port for n in c.nodes] if args.round_robin else [c.nodes[0].port]
            targets.append((c.label, ports, c.nodes, c.results))
        runs: dict = {}
        for round_no in range(1, args.rounds + 1):
            if args.rounds > 1:
                log(f"round {round_no} of {args.rounds}")
            for workload in WORKLOADS:
                for label, ports, watched, _ in targets:
                    res = run_workload(label, ports, watched, workload, args)
                    runs.setdefault((label, workload), []).append(res)
        for label, _, _, results in targets:
            for workload in WORKLOADS:
                _, test, pipe = workload
                results[(test, pipe)] = median_result(runs[(label, workload)])

        redis.memory["vmrss_kib"] = proc_rss_kib(redis.proc.pid)
        if (size := dbsize(redis.port)) is not None:
            redis.memory["dbsize"] = size
        stop_server(redis)
        for c in clusters:
            for node in c.nodes:
                info = {"vmrss_kib": proc_rss_kib(node.proc.pid)}
                st = dynamo_status(node.port)
                if "keys" in st:
                    info["keys"] = st["keys"]
                dyn = info_fields(node.port, "dynamo")
                info.update({k: dyn[k] for k in DYNAMO_COUNTERS if k in dyn})
                c.node_info.append(info)
            for node in c.nodes:
                stop_server(node)
        print()
        print(report(redis, clusters, args, dynamo_bin, params, mode))
        if any(not r.ok for r in redis.results.values()) or \
                any(not r.ok for c in clusters for r in c.results.values()):
            status = 1
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the servers", file=sys.stderr)
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        for srv in [redis] + [n for c in clusters for n in c.nodes]:
            stop_server(srv)
        if args.keep_tmp:
            print(f"temp dirs kept under {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
