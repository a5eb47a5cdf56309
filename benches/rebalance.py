#!/usr/bin/env python3
"""Adding a 4th node to a 3-node cluster that holds K keys, under client load.

The issue: *time and throughput of adding a 4th node to a 3-node cluster
holding 1e6 keys, and the clients' p99.9 during it.*

On 127.0.0.1 (free ports, never 6379), in one temp dir:

  1. starts 3 dynamo-server nodes (N=3 R=2 W=2, sled, gossip every 200 ms,
     request timeout 2000 ms) and waits until they agree on a settled ring;
  2. loads K keys key:%012d (default 1,000,000) with --value-bytes values
     through node 1 with `redis-cli --pipe`, and waits until every node
     stores all K;
  3. starts a fixed-rate client load on nodes 1-3 (threads, 80% GET / 20%
     SET on random loaded keys, each request's latency timed with
     time.perf_counter) that runs until the end of the measurement;
  4. after a baseline window, starts node 4 (seeded with node 1, so it joins
     by itself), polls DYNAMO STATUS and INFO dynamo of every node every
     0.5 s, and records when the ring settles (every node: transition none,
     transfers_pending 0, members 4, one ring_digest) and when the hand-off
     that follows is over (the nodes' `keys` add up to N*K again);
  5. checks a sample of keys through node 4 and node 1 against what was
     written;
  6. prints the tables, then the same in Markdown for benches/README.md:
     join timings and transfer rates, client latency and errors per window
     (baseline, join, hand-off, after), CPU used by the nodes / this script /
     the whole machine per window (to tell contention from other jobs), and
     per-node keys and counters.

Each load thread writes only its own keys (key index = thread mod threads),
so it knows every value a key can hold and checks each GET of its keys:
a value older than the last acknowledged SET counts as stale, a value never
written for that key as wrong, nil as a miss.

Python 3.11 standard library only (plus redis-cli); shares helpers with
ratio.py and cluster_ratio.py.  See benches/README.md.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True  # no benches/__pycache__ from the imports

from ratio import (  # noqa: E402  (after the sys.path change)
    APT_HINT,
    pipe_commands,
    REPO_ROOT,
    BenchError,
    Server,
    default_bin,
    fmt_num,
    free_ports,
    info_fields,
    log,
    log_tail,
    machine_line,
    proc_rss_kib,
    render_table,
    start_server,
    stop_server,
)
from cluster_ratio import N, R, W, node_command  # noqa: E402

ENGINE = "sled"
GOSSIP_MS = 200
REQUEST_TIMEOUT_MS = 2000
EXTRA_ARGS = ["--gossip-interval-ms", str(GOSSIP_MS),
              "--request-timeout-ms", str(REQUEST_TIMEOUT_MS)]
OLD_NODES = 3  # nodes before the join; node 4 is the new one

POLL_S = 0.5  # STATUS / INFO polling period during the join and hand-off
PROGRESS_S = 5.0  # how often the progress line is logged
KEY_FMT = b"key:%012d"
MIN_VALUE_BYTES = 32  # room for the tag + key index each value starts with

# Hand-off: done when the nodes' keys add up to N*K exactly; or, if that never
# happens, when they are within this share of N*K and handoff_keys_dropped has
# not moved for HANDOFF_STABLE_S.
HANDOFF_TOLERANCE = 0.001
HANDOFF_STABLE_S = 10.0

# Fields read from DYNAMO STATUS / INFO dynamo on every poll.
INT_FIELDS = ("members", "keys", "partitions", "transfers_pending",
              "transfer_keys_received", "transfer_bytes_received", "transfer_keys_sent",
              "transfer_bytes_sent", "transfer_partitions_done", "handoff_keys_sent",
              "handoff_keys_dropped", "background_deferrals", "quorum_failures",
              "transfers_active", "hints_pending", "read_repairs")

# Request outcomes of the client load.
OK, STALE, ERR_REPLY, TIMEOUT, CONN, MISS, WRONG = range(7)
OUTCOME_NAMES = {OK: "ok", STALE: "stale", ERR_REPLY: "error reply", TIMEOUT: "timeout",
                 CONN: "connection error", MISS: "miss (nil)", WRONG: "wrong value"}
ERRORS = (ERR_REPLY, TIMEOUT, CONN)  # the request failed
BAD_READS = (MISS, WRONG)  # the request answered, with no or a foreign value

# Child processes other than the nodes (redis-cli --pipe), killed on exit.
_children: list[subprocess.Popen] = []


# --------------------------------------------------------------------------- #
# a small RESP client (polling and the client load; no redis-cli per request)


class RespError(str):
    """An error reply (-ERR ..., -UNAVAILABLE ...)."""


class ProtocolError(Exception):
    pass


class Conn:
    def __init__(self, port: int, timeout: float):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb")

    def close(self) -> None:
        try:
            self.rf.close()
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(*args: bytes | str | int) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = b"%d" % a
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self):
        line = self.rf.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the server")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode(errors="replace")
        if t == b"-":
            return RespError(rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t in (b"$", b"=", b"!"):
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("connection closed by the server")
            return data[:-2]
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if t == b"%":  # RESP3 map, flattened like RESP2
            out = []
            for _ in range(int(rest)):
                out.append(self.read())
                out.append(self.read())
            return out
        if t == b"_":
            return None
        if t == b",":
            return float(rest)
        if t == b"#":
            return rest == b"t"
        raise ProtocolError(f"unexpected reply line {line[:80]!r}")

    def call(self, *args):
        self.send(self.encode(*args))
        return self.read()


def text(v) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


class Poller:
    """DYNAMO STATUS + INFO dynamo of one node over a kept connection."""

    def __init__(self, port: int):
        self.port = port
        self.conn: Conn | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def poll(self) -> dict | None:
        """The node's fields (str or int values), or None if it does not answer."""
        try:
            if self.conn is None:
                self.conn = Conn(self.port, timeout=3.0)
            st = self.conn.call("DYNAMO", "STATUS")
            info = self.conn.call("INFO", "dynamo")
        except (OSError, ProtocolError, ValueError):
            self.close()
            return None
        if not isinstance(st, list) or isinstance(info, RespError) or info is None:
            return None
        out: dict = {}
        for i in range(0, len(st) - 1, 2):
            k, v = text(st[i]), st[i + 1]
            if not isinstance(v, list):
                out[k] = text(v)
        for line in text(info).splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out.setdefault(k.strip(), v.strip())
        for k in INT_FIELDS:
            if k in out:
                try:
                    out[k] = int(out[k])
                except ValueError:
                    pass
        return out


# --------------------------------------------------------------------------- #
# values


def value_of(tag: bytes, i: int, size: int) -> bytes:
    """The value with `tag` for key i: "TAG-%012d-" then x up to `size` bytes."""
    return (b"%s-%012d-" % (tag, i)).ljust(size, b"x")


LOAD_TAG = b"L"


# --------------------------------------------------------------------------- #
# the client load


@dataclass
class KeyState:
    """What a GET of one key may return (its only writer is one load thread)."""
    acked: bytes = LOAD_TAG  # tag of the last acknowledged SET (or the load)
    pending: list = field(default_factory=list)  # tags of failed SETs since then
    older: set = field(default_factory=set)  # tags superseded by a later ack


class LoadThread(threading.Thread):
    """Fixed-rate GET/SET on nodes 1..3 (round robin), every request timed.

    Requests are scheduled every `interval` seconds from the start; a thread
    that falls behind (a slow request) sends the late ones back to back, so
    the rate holds on average.  Each record is (scheduled, sent, done, op,
    outcome, node) with perf_counter times.
    """

    def __init__(self, idx: int, threads: int, ports: list[int], rate: float, keys: int,
                 value_bytes: int, set_share: float, client_timeout: float,
                 stop: threading.Event, t_start: float, seed: int):
        super().__init__(name=f"load-{idx}", daemon=True)
        self.idx, self.threads, self.ports = idx, threads, ports
        self.interval = 1.0 / rate
        self.keys, self.value_bytes, self.set_share = keys, value_bytes, set_share
        self.client_timeout = client_timeout
        self.stop = stop
        self.t_start = t_start + idx * self.interval / threads  # staggered
        self.rng = random.Random(seed)
        self.records: list[tuple] = []
        self.states: dict[int, KeyState] = {}  # keys this thread has SET
        self.error_examples: dict[int, list[str]] = {}
        self.seq = 0
        self.crash: str = ""

    def note(self, outcome: int, msg: str) -> None:
        ex = self.error_examples.setdefault(outcome, [])
        if len(ex) < 5 and msg not in ex:
            ex.append(msg)

    def own_key(self) -> int:
        # this thread's keys: i % threads == idx
        count = (self.keys - self.idx + self.threads - 1) // self.threads
        return self.idx + self.threads * self.rng.randrange(count)

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # reported, never silent
            self.crash = f"{type(e).__name__}: {e}"

    def _run(self) -> None:
        conns: list[Conn | None] = [None] * len(self.ports)
        next_t = self.t_start
        n = 0
        try:
            while not self.stop.is_set():
                now = time.perf_counter()
                if now < next_t:
                    time.sleep(next_t - now)
                    if self.stop.is_set():
                        break
                sched = next_t
                next_t += self.interval
                node = n % len(self.ports)
                n += 1
                k = self.own_key()
                key = KEY_FMT % k
                is_set = self.rng.random() < self.set_share
                if is_set:
                    self.seq += 1
                    tag = b"S%d.%d" % (self.idx, self.seq)
                    req = Conn.encode(b"SET", key, value_of(tag, k, self.value_bytes))
                else:
                    tag = None
                    req = Conn.encode(b"GET", key)
                t_send = time.perf_counter()
                outcome = OK
                try:
                    c = conns[node]
                    if c is None:
                        c = conns[node] = Conn(self.ports[node], self.client_timeout)
                    c.send(req)
                    reply = c.read()
                    if isinstance(reply, RespError):
                        outcome = ERR_REPLY
                        self.note(ERR_REPLY, f"node {node + 1}: {reply[:200]}")
                    elif is_set:
                        if reply != "OK":
                            outcome = ERR_REPLY
                            self.note(ERR_REPLY, f"node {node + 1}: SET answered {reply!r:.200}")
                    else:
                        outcome = self.check_get(k, reply, node)
                except (socket.timeout, TimeoutError) as e:
                    outcome = TIMEOUT
                    self.note(TIMEOUT, f"node {node + 1}: no reply within "
                                       f"{self.client_timeout:g}s ({e})")
                except (OSError, ConnectionError, ProtocolError, ValueError) as e:
                    outcome = CONN
                    self.note(CONN, f"node {node + 1}: {type(e).__name__}: {e}")
                t_done = time.perf_counter()
                if outcome in ERRORS and conns[node] is not None:
                    conns[node].close()  # unknown state: reconnect for the next one
                    conns[node] = None
                if is_set:
                    st = self.states.get(k)
                    if st is None:
                        st = self.states[k] = KeyState()
                    if outcome == OK:
                        st.older.add(st.acked)
                        st.older.update(st.pending)
                        st.acked, st.pending = tag, []
                    else:
                        st.pending.append(tag)  # may or may not have been applied
                self.records.append((sched, t_send, t_done, 1 if is_set else 0, outcome, node))
        finally:
            for c in conns:
                if c is not None:
                    c.close()

    def acceptable(self, k: int) -> tuple[set, set]:
        """(tags a read of key k may return now, older tags of k)."""
        st = self.states.get(k)
        if st is None:
            return {LOAD_TAG}, set()
        return {st.acked, *st.pending}, st.older

    def classify(self, k: int, reply) -> int:
        if reply is None:
            return MISS
        if not isinstance(reply, bytes):
            return WRONG
        tag, sep, rest = reply.partition(b"-")
        if not sep or not rest.startswith(b"%012d-" % k) or \
                reply != value_of(tag, k, self.value_bytes):
            return WRONG
        ok, older = self.acceptable(k)
        if tag in ok:
            return OK
        if tag in older:
            return STALE
        return WRONG

    def check_get(self, k: int, reply, node: int) -> int:
        outcome = self.classify(k, reply)
        if outcome != OK:
            shown = reply if reply is None else bytes(reply[:40])
            self.note(outcome, f"node {node + 1}: GET key:{k:012d} -> {shown!r}")
        return outcome


# --------------------------------------------------------------------------- #
# latency windows


def percentile(sorted_vals: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    idx = max(0, math.ceil(q * len(sorted_vals)) - 1)
    return sorted_vals[min(idx, len(sorted_vals) - 1)]


@dataclass
class Window:
    name: str
    start: float | None
    end: float | None
    requests: int = 0
    gets: int = 0
    sets: int = 0
    counts: dict = field(default_factory=dict)  # outcome -> count
    lat: dict = field(default_factory=dict)  # "all"/"get"/"set"/"sched" -> sorted ms
    cpu: tuple = ()  # (CpuSnap at the start, CpuSnap at the end), if taken

    @property
    def seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    def pct(self, what: str, q: float) -> float | None:
        return percentile(self.lat.get(what, []), q)


@dataclass
class CpuSnap:
    """CPU seconds used so far: by each node, by this script, by the machine."""
    t: float
    nodes: dict  # node index -> utime + stime seconds
    script: float
    machine: float | None  # busy seconds over all CPUs (/proc/stat)


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_s() -> float | None:
    try:
        vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        return (sum(vals[:8]) - idle) / CLK_TCK  # guest time is already in user
    except (OSError, ValueError, IndexError):
        return None


def cpu_snapshot(nodes: list) -> CpuSnap:
    per = {}
    for i, n in enumerate(nodes):
        if n.proc is not None and n.proc.poll() is None:
            v = proc_cpu_s(n.proc.pid)
            if v is not None:
                per[i] = v
    return CpuSnap(t=time.perf_counter(), nodes=per, script=time.process_time(),
                   machine=machine_busy_s())


def cpu_cores(w: Window) -> tuple[float | None, float | None, float | None]:
    """(nodes, this script, whole machine) in cores busy over the window."""
    if len(w.cpu) != 2:
        return None, None, None
    a, b = w.cpu
    dt = b.t - a.t
    if dt <= 0:
        return None, None, None
    nodes = sum(v - a.nodes.get(i, 0.0) for i, v in b.nodes.items()) / dt
    script = (b.script - a.script) / dt
    machine = None if a.machine is None or b.machine is None else (b.machine - a.machine) / dt
    return nodes, script, machine


def fill_windows(windows: list[Window], threads: list[LoadThread]) -> None:
    """Assigns each request to the window its send time falls in."""
    bounded = [w for w in windows if w.start is not None and w.end is not None]
    lat: dict[str, dict[str, list[float]]] = {
        w.name: {"all": [], "get": [], "set": [], "sched": []} for w in bounded}
    for th in threads:
        for sched, sent, done, is_set, outcome, _node in th.records:
            for w in bounded:
                if w.start <= sent < w.end:
                    w.requests += 1
                    if is_set:
                        w.sets += 1
                    else:
                        w.gets += 1
                    w.counts[outcome] = w.counts.get(outcome, 0) + 1
                    ms = (done - sent) * 1000
                    d = lat[w.name]
                    d["all"].append(ms)
                    d["set" if is_set else "get"].append(ms)
                    d["sched"].append((done - sched) * 1000)
                    break
    for w in bounded:
        w.lat = {k: sorted(v) for k, v in lat[w.name].items()}


# --------------------------------------------------------------------------- #
# cluster


@dataclass
class Run:
    keys: int
    root: Path
    nodes: list = field(default_factory=list)  # [Server], node 1 first
    peer_ports: list = field(default_factory=list)
    cmds: list = field(default_factory=list)
    version: str = "?"
    load_s: float | None = None
    load_settle_s: float | None = None  # load end -> every node stores K
    converge_s: float | None = None
    # times (perf_counter)
    t_load_start: float | None = None
    t_join: float | None = None  # node 4's process started
    t_pong: float | None = None
    t_member: float | None = None  # every node lists 4 members
    phase_first: dict = field(default_factory=dict)  # phase -> first seen (any node)
    t_rx_first: float | None = None
    t_rx_last: float | None = None  # last poll where node 4's received keys rose
    t_settle: float | None = None
    t_drop_first: float | None = None
    t_drop_last: float | None = None
    t_handoff: float | None = None
    t_after_end: float | None = None
    handoff_exact: bool = False
    settle_timed_out: bool = False
    handoff_timed_out: bool = False
    max_pending: int = 0
    before: list = field(default_factory=list)  # per node polled fields before the join
    at_settle: list = field(default_factory=list)
    final: list = field(default_factory=list)
    rss_kib: list = field(default_factory=list)
    disk_bytes: list = field(default_factory=list)
    verify: dict = field(default_factory=dict)  # node label -> {outcome: count}
    verify_examples: list = field(default_factory=list)
    verify_sample: int = 0
    loadavg: dict = field(default_factory=dict)  # moment -> 1-minute load average
    cpu: dict = field(default_factory=dict)  # moment -> CpuSnap
    notes: list = field(default_factory=list)
    error: str = ""


def start_node(run: Run, i: int, bin_path: Path, client_port: int, peer_port: int) -> None:
    node = Server(key=f"n{i + 1}", label=f"node {i + 1}", kind="dynamo")
    node.tmp = run.root / f"n{i + 1}"
    node.tmp.mkdir(parents=True)
    node.port = client_port
    run.nodes.append(node)
    run.peer_ports.append(peer_port)
    cmd = node_command(bin_path, node, peer_port, run.peer_ports[0], ENGINE) + EXTRA_ARGS
    run.cmds.append(cmd)
    log(f"  starting node {i + 1} on port {client_port} (peer port {peer_port})")
    start_server(node, cmd)  # waits for PONG


def check_alive(run: Run, during: str) -> None:
    for s in run.nodes:
        if s.proc is not None and s.proc.poll() is not None:
            raise BenchError(f"{s.label} exited with status {s.proc.returncode} "
                             f"during {during}; log:\n{log_tail(s)}")


def settled(polls: list[dict | None], members: int) -> bool:
    if any(p is None for p in polls):
        return False
    digests = {p.get("ring_digest") for p in polls}
    return (len(digests) == 1 and None not in digests
            and all(p.get("transition") == "none" and p.get("transfers_pending") == 0
                    and p.get("members") == members for p in polls))


def describe(run: Run, polls: list[dict | None]) -> str:
    out = []
    for n, p in zip(run.nodes, polls):
        if p is None:
            out.append(f"  {n.label}: no answer")
            continue
        out.append(f"  {n.label}: " + " ".join(
            f"{k}={p.get(k, '-')}" for k in ("membership", "members", "transition",
                                             "transfers_pending", "ring_digest", "partitions",
                                             "keys", "transfer_keys_received",
                                             "handoff_keys_dropped")))
    return "\n".join(out)


def wait_settled(run: Run, pollers: list[Poller], members: int, timeout_s: float,
                 what: str) -> float:
    t0 = time.perf_counter()
    while True:
        check_alive(run, what)
        polls = [p.poll() for p in pollers]
        if settled(polls, members):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout_s:
            raise BenchError(f"{what}: the nodes did not settle on {members} members within "
                             f"{timeout_s:.0f}s:\n{describe(run, polls)}")
        time.sleep(0.2)


def wait_keys(run: Run, pollers: list[Poller], expected: int, timeout_s: float,
              what: str) -> float:
    t0 = time.perf_counter()
    while True:
        check_alive(run, what)
        polls = [p.poll() for p in pollers]
        if all(p is not None and p.get("keys") == expected for p in polls):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout_s:
            raise BenchError(f"{what}: the nodes did not all store {expected} keys within "
                             f"{timeout_s:.0f}s:\n{describe(run, polls)}")
        time.sleep(0.5)


def pipe_load(port: int, keys: int, size: int, out_path: Path, timeout_s: float) -> float:
    """SET key:%012d = value_of("L", i) for i < keys through `redis-cli --pipe`
    (`ratio.pipe_commands`); every reply must be a success.  Returns the
    seconds taken.
    """
    def chunks():
        chunk = 20000
        for lo in range(0, keys, chunk):
            buf = []
            for i in range(lo, min(lo + chunk, keys)):
                k = KEY_FMT % i
                v = value_of(LOAD_TAG, i, size)
                buf.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                           % (len(k), k, len(v), v))
            yield b"".join(buf)
    return pipe_commands(port, chunks(), keys, out_path, timeout_s, _children,
                         f"loading {keys} keys")


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def total(polls: list[dict | None], name: str) -> int | None:
    vals = [p.get(name) if p else None for p in polls]
    if any(not isinstance(v, int) for v in vals):
        return None
    return sum(vals)


# --------------------------------------------------------------------------- #
# the join


def watch_join(run: Run, pollers: list[Poller], args: argparse.Namespace,
               deadline: float) -> None:
    """Polls until the ring settles and the hand-off is over (or times out)."""
    K = run.keys
    target = N * K
    new = len(run.nodes) - 1
    last_progress = 0.0
    last_rx = 0
    last_drop = None
    last_drop_change = None
    phase_seen = None
    while True:
        t_poll = time.perf_counter()
        check_alive(run, "the join")
        polls = [p.poll() for p in pollers]
        now = time.perf_counter()
        since = now - run.t_join
        p4 = polls[new]
        for p in polls:
            if p is None:
                continue
            ph = p.get("transition")
            if ph and ph not in run.phase_first:
                run.phase_first[ph] = now
            if isinstance(p.get("transfers_pending"), int):
                run.max_pending = max(run.max_pending, p["transfers_pending"])
        if run.t_member is None and all(p is not None and p.get("members") == OLD_NODES + 1
                                        for p in polls):
            run.t_member = now
        if p4 is not None:
            rx = p4.get("transfer_keys_received", 0) or 0
            if rx > last_rx:
                if run.t_rx_first is None:
                    run.t_rx_first = now
                run.t_rx_last = now
                last_rx = rx
            if p4.get("transition") != phase_seen:
                phase_seen = p4.get("transition")
                log(f"    +{since:.1f}s: node 4 sees transition {phase_seen}")
        keys_sum = total(polls, "keys")
        dropped = total(polls, "handoff_keys_dropped")
        # settle: the ring includes node 4 (it owns partitions) and every node agrees
        if run.t_settle is None:
            if (settled(polls, OLD_NODES + 1) and p4 is not None
                    and isinstance(p4.get("partitions"), int) and p4["partitions"] > 0):
                run.t_settle = now
                run.cpu["settle"] = cpu_snapshot(run.nodes)
                run.at_settle = polls
                log(f"  ring settled {now - run.t_join:.1f}s after node 4 started "
                    f"(node 4: {p4.get('partitions')} partitions, "
                    f"{p4.get('transfer_keys_received')} keys received); "
                    f"keys on the nodes: {keys_sum}")
            elif now > deadline or since > args.join_timeout:
                run.settle_timed_out = True
                log(f"  the ring did not settle within {since:.0f}s of node 4's start:\n"
                    + describe(run, polls))
                return
        # hand-off: after the settle, until the nodes hold N*K keys again
        if run.t_settle is not None and dropped is not None:
            if last_drop is None or dropped != last_drop:
                if last_drop is not None and dropped > last_drop:
                    if run.t_drop_first is None:
                        run.t_drop_first = now
                    run.t_drop_last = now
                last_drop, last_drop_change = dropped, now
            if keys_sum == target:
                run.t_handoff, run.handoff_exact = now, True
            elif (keys_sum is not None and abs(keys_sum - target) <= HANDOFF_TOLERANCE * target
                  and now - last_drop_change >= HANDOFF_STABLE_S):
                run.t_handoff = last_drop_change
            if run.t_handoff is not None:
                run.cpu["handoff"] = cpu_snapshot(run.nodes)
                log(f"  hand-off over {run.t_handoff - run.t_settle:.1f}s after the settle: "
                    f"keys on the nodes {keys_sum} (N*K = {target})"
                    + ("" if run.handoff_exact else " (within tolerance, drops stopped)"))
                run.final = polls
                return
            if now > deadline or now - run.t_settle > args.handoff_timeout:
                run.handoff_timed_out = True
                run.final = polls
                log(f"  the hand-off was not over {now - run.t_settle:.0f}s after the settle "
                    f"(keys on the nodes {keys_sum}, N*K = {target}):\n" + describe(run, polls))
                return
        if now - last_progress >= PROGRESS_S:
            last_progress = now
            ks = "/".join("?" if p is None else str(p.get("keys", "?")) for p in polls)
            log(f"    +{since:.0f}s: transition {p4.get('transition') if p4 else '?'}, "
                f"pending {p4.get('transfers_pending') if p4 else '?'}, node 4 received "
                f"{last_rx} keys, dropped {dropped}, keys {ks} (sum {keys_sum})")
        time.sleep(max(0.0, POLL_S - (time.perf_counter() - t_poll)))


def verify(run: Run, threads: list[LoadThread], args: argparse.Namespace) -> None:
    """GETs a sample of keys through node 4 and node 1; checks every value."""
    K = run.keys
    rng = random.Random(args.seed + 1)
    sample = rng.sample(range(K), min(args.verify_keys, K))
    # plus keys the load rewrote (their expected value is not the loaded one)
    written = sorted(k for th in threads for k in th.states)
    extra = rng.sample(written, min(len(written), args.verify_keys // 2))
    keys = sorted(set(sample) | set(extra))
    run.verify_sample = len(keys)
    owner = {i: th for i, th in enumerate(threads)}
    for idx in (len(run.nodes) - 1, 0):
        node = run.nodes[idx]
        counts: dict[int, int] = {}
        checked = 0
        conn = None
        try:
            conn = Conn(node.port, max(args.client_timeout, 10.0))
            for lo in range(0, len(keys), 200):
                batch = keys[lo:lo + 200]
                conn.send(b"".join(Conn.encode(b"GET", KEY_FMT % k) for k in batch))
                for k in batch:
                    reply = conn.read()
                    if isinstance(reply, RespError):
                        outcome = ERR_REPLY
                    else:
                        outcome = owner[k % len(threads)].classify(k, reply)
                    counts[outcome] = counts.get(outcome, 0) + 1
                    checked += 1
                    if outcome != OK and len(run.verify_examples) < 10:
                        shown = reply if reply is None else bytes(reply[:60])
                        run.verify_examples.append(f"{node.label}: GET key:{k:012d} -> {shown!r}")
        except (OSError, ProtocolError, ValueError) as e:
            # the keys not checked count as failed
            counts[CONN] = counts.get(CONN, 0) + len(keys) - checked
            run.verify_examples.append(f"{node.label}: {type(e).__name__}: {e} "
                                       f"({len(keys) - checked} keys not checked)")
        finally:
            if conn is not None:
                conn.close()
        run.verify[node.label] = counts
        bad = sum(v for o, v in counts.items() if o != OK)
        log(f"  verify through {node.label}: {counts.get(OK, 0)} of {len(keys)} keys match"
            + (f", {bad} do not: " + ", ".join(f"{OUTCOME_NAMES[o]} {v}" for o, v in
                                                sorted(counts.items()) if o != OK)
               if bad else ""))


# --------------------------------------------------------------------------- #
# report


def ms(v: float | None) -> str:
    return fmt_num(v, ".2f")


def sec(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"


def secs(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def report(run: Run, windows: list[Window], threads: list[LoadThread],
           args: argparse.Namespace, dynamo_bin: Path, md: bool) -> str:
    K = run.keys
    key_bytes = len(KEY_FMT % 0)
    data_bytes = K * (key_bytes + args.value_bytes)
    new = len(run.nodes) - 1
    parts = []
    label = (lambda s: f"**{s}:** ") if md else (lambda s: f"{s + ':':<11}")
    parts.append(label("Machine") + machine_line())
    try:
        shown_bin = dynamo_bin.relative_to(REPO_ROOT)
    except ValueError:
        shown_bin = dynamo_bin
    parts.append(label("Binary") + f"dynamo-server {run.version} ({shown_bin}, copied "
                 "to the temp dir at the start)")
    parts.append(label("Cluster") + f"3 nodes + 1 joining, on 127.0.0.1, --n {N} --r {R} "
                 f"--w {W} --engine {ENGINE} " + " ".join(EXTRA_ARGS)
                 + ", other settings default; node 4 seeded with node 1, joins by itself")
    parts.append(label("Data") + f"{K:,} keys key:%012d with {args.value_bytes}-byte values "
                 f"({data_bytes / 1e6:,.1f} MB of keys + values, x{N} replicas), loaded "
                 f"through node 1 with redis-cli --pipe")
    if run.loadavg:
        parts.append(label("Load avg") + "1-minute load average "
                     + ", ".join(f"{v:.2f} at {k}" for k, v in run.loadavg.items())
                     + " (includes this run's own nodes and clients; compare with nproc)")
    parts.append(label("Clients") + f"{args.threads} threads, {args.rate:g} req/s in all "
                 f"(fixed rate), {100 * (1 - args.set_share):.0f}% GET / "
                 f"{100 * args.set_share:.0f}% SET of random loaded keys, round robin over "
                 f"nodes 1-3, one connection per thread and node, "
                 f"client timeout {args.client_timeout:g}s")
    parts.append("")

    # 1. the join
    join_s = secs(run.t_join, run.t_settle)
    hand_s = secs(run.t_settle, run.t_handoff)
    p4s = run.at_settle[new] if len(run.at_settle) > new and run.at_settle[new] else {}
    p4f = run.final[new] if len(run.final) > new and run.final[new] else p4s
    rx_keys = p4s.get("transfer_keys_received") if p4s else None
    rx_bytes = p4s.get("transfer_bytes_received") if p4s else None
    active_s = secs(run.t_rx_first, run.t_rx_last)

    def rate(n, s, scale=1.0, spec=",.0f"):
        if not isinstance(n, int) or not s:
            return "-"
        return format(n / scale / s, spec)

    rows = [
        ["load K keys through node 1", sec(run.load_s),
         f"{rate(K, run.load_s)} SET/s; every node stored all K "
         f"{fmt_num(run.load_settle_s, '.1f')} s after the load ended"],
        ["node 4 start -> PONG", sec(secs(run.t_join, run.t_pong)), ""],
        ["node 4 start -> all list 4 members", sec(secs(run.t_join, run.t_member)), ""],
    ]
    for ph in ("announced", "syncing", "switching-reads"):
        if ph in run.phase_first:
            rows.append([f"node 4 start -> phase {ph} first seen",
                         sec(secs(run.t_join, run.phase_first[ph])), ""])
    rows += [
        ["node 4 start -> settled (ring with 4 nodes, no transition)",
         (f"> {args.join_timeout:g} s (timeout)" if run.settle_timed_out
          else sec(join_s)),
         f"moves (max transfers_pending) {run.max_pending}"],
        ["node 4 keys / bytes received by the settle",
         f"{rx_keys:,} / {rx_bytes / 1e6:,.1f} MB" if isinstance(rx_keys, int)
         and isinstance(rx_bytes, int) else "-",
         f"{rate(rx_keys, join_s)} keys/s, {rate(rx_bytes, join_s, 1e6, ',.2f')} MB/s over "
         f"start -> settle"],
        ["node 4 fetching (first -> last poll its received keys rose)",
         sec(active_s),
         f"{rate(rx_keys, active_s)} keys/s, {rate(rx_bytes, active_s, 1e6, ',.2f')} MB/s"],
        ["node 4 partitions owned / fair share",
         f"{p4s.get('partitions', '-')} / {p4s.get('fair_share', '-')}" if p4s else "-",
         f"partitions done {p4s.get('transfer_partitions_done', '-')}; ring balance "
         f"{p4s.get('balance', '-')}" if p4s else ""],
        ["settled -> hand-off over (keys sum back to N*K)",
         (f"> {args.handoff_timeout:g} s (timeout)" if run.handoff_timed_out
          else sec(hand_s)),
         "" if run.t_handoff is None else
         ("exactly N*K" if run.handoff_exact else
          f"within {100 * HANDOFF_TOLERANCE:g}% of N*K, drops stopped")],
        ["keys dropped by hand-off (all nodes)",
         f"{total(run.final, 'handoff_keys_dropped') or 0:,}" if run.final else "-",
         f"{rate(total(run.final, 'handoff_keys_dropped'), hand_s)} keys/s over settle -> "
         "over; first drop "
         + fmt_num(secs(run.t_settle, run.t_drop_first), ".1f") + " s after the settle"],
        ["node 4 start -> hand-off over",
         sec(secs(run.t_join, run.t_handoff)), ""],
    ]
    if md:
        parts.append("#### Join")
        parts.append("")
    else:
        parts.append("Join:")
    parts.append(render_table(["step", "value", "notes"], rows, md, right={1}))
    parts.append("")

    # 2. client latency by window
    headers = ["window", "s", "requests", "req/s", "errors", "stale", "miss/wrong",
               "p50 ms", "p99 ms", "p99.9 ms", "max ms", "GET p99.9", "SET p99.9",
               "p99.9 from schedule", "CPU nodes/script/machine"]
    rows = []
    for w in windows:
        if w.seconds is None:
            rows.append([w.name, "-"] + ["-"] * (len(headers) - 2))
            continue
        errs = sum(w.counts.get(o, 0) for o in ERRORS)
        bad = sum(w.counts.get(o, 0) for o in BAD_READS)
        cores = "/".join(fmt_num(c, ".2f") for c in cpu_cores(w))
        rows.append([w.name, f"{w.seconds:.1f}", f"{w.requests:,}",
                     f"{w.requests / w.seconds:,.0f}" if w.seconds else "-",
                     str(errs), str(w.counts.get(STALE, 0)), str(bad),
                     ms(w.pct("all", 0.5)), ms(w.pct("all", 0.99)), ms(w.pct("all", 0.999)),
                     ms(w.lat["all"][-1] if w.lat.get("all") else None),
                     ms(w.pct("get", 0.999)), ms(w.pct("set", 0.999)),
                     ms(w.pct("sched", 0.999)), cores])
    if md:
        parts.append("#### Client latency")
        parts.append("")
    else:
        parts.append("Client latency (nodes 1-3):")
    parts.append(render_table(headers, rows, md, right=set(range(1, len(headers)))))
    parts.append("")
    parts.append("Latency: send -> reply of each request (all of them, failed ones included). "
                 "p99.9 from schedule: from the time the request was due, so it includes "
                 "waiting behind a slow request of the same thread. errors: error replies, "
                 "client timeouts, connection errors. stale: a GET returned a value older "
                 "than the key's last acknowledged SET. miss/wrong: nil, or a value never "
                 "written to that key. baseline: the last "
                 f"{args.baseline:g} s before node 4 started; after: {args.after:g} s after "
                 f"the hand-off. A window of {args.rate:g} req/s x 10 s holds about "
                 f"{args.rate * 10:,.0f} requests, so its p99.9 rests on its ~"
                 f"{max(1, round(args.rate * 10 / 1000))} slowest per 10 s. CPU: cores "
                 "busy over the window (1.00 = one CPU) in the dynamo-server processes, in "
                 "this script (clients and polling) and on the whole machine (/proc/stat); "
                 "the rest of the machine's figure is other work.")
    parts.append("")

    # 3. per node
    headers = ["node", "keys before", "keys at settle", "keys after", "partitions",
               "transfer keys in/out", "transfer MB in/out", "hand-off sent/dropped",
               "deferrals", "VmRSS MiB", "data dir MB"]
    rows = []
    for i, node in enumerate(run.nodes):
        b = run.before[i] if i < len(run.before) and run.before[i] else {}
        s = run.at_settle[i] if i < len(run.at_settle) and run.at_settle[i] else {}
        f = run.final[i] if i < len(run.final) and run.final[i] else {}

        def g(d, k):
            v = d.get(k)
            return "-" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))

        def mb(d, k):
            v = d.get(k)
            return f"{v / 1e6:,.1f}" if isinstance(v, int) else "-"
        rss = run.rss_kib[i] if i < len(run.rss_kib) else None
        disk = run.disk_bytes[i] if i < len(run.disk_bytes) else None
        rows.append([node.label, g(b, "keys"), g(s, "keys"), g(f, "keys"),
                     g(f or s, "partitions"),
                     f"{g(f, 'transfer_keys_received')}/{g(f, 'transfer_keys_sent')}",
                     f"{mb(f, 'transfer_bytes_received')}/{mb(f, 'transfer_bytes_sent')}",
                     f"{g(f, 'handoff_keys_sent')}/{g(f, 'handoff_keys_dropped')}",
                     g(f, "background_deferrals"),
                     "-" if rss is None else f"{rss / 1024:,.0f}",
                     "-" if disk is None else f"{disk / 1e6:,.0f}"])
    if md:
        parts.append("#### Nodes")
        parts.append("")
    else:
        parts.append("Nodes:")
    parts.append(render_table(headers, rows, md, right=set(range(1, len(headers)))))
    parts.append("")
    parts.append("keys: DYNAMO STATUS `keys` (stored on that node) before node 4 started, at "
                 "the settle and after the hand-off. Counters from INFO dynamo after the "
                 f"hand-off; deferrals: background rounds skipped under load. N*K = {N * K:,}.")
    parts.append("")

    # CPU of each node by window
    cw = [w for w in windows if len(w.cpu) == 2 and w.cpu[1].t > w.cpu[0].t]
    if cw:
        rows = []
        for i, node in enumerate(run.nodes):
            row = [node.label]
            for w in cw:
                a, b = w.cpu
                v = b.nodes.get(i)
                row.append("-" if v is None else
                           f"{(v - a.nodes.get(i, 0.0)) / (b.t - a.t):.2f}")
            rows.append(row)
        if md:
            parts.append("#### Node CPU by window (cores)")
            parts.append("")
        else:
            parts.append("Node CPU by window (cores busy, 1.00 = one CPU):")
        parts.append(render_table(["node"] + [w.name for w in cw], rows, md,
                                  right=set(range(1, len(cw) + 1))))
        parts.append("")

    # 4. verification
    vparts = []
    for lbl, counts in run.verify.items():
        bad = {OUTCOME_NAMES[o]: v for o, v in sorted(counts.items()) if o != OK}
        vparts.append(f"{lbl}: {counts.get(OK, 0):,}/{run.verify_sample:,} match"
                      + ("" if not bad else " (" + ", ".join(f"{k} {v}" for k, v in bad.items())
                         + ")"))
    parts.append(label("Verify") + ("; ".join(vparts) if vparts else "not run")
                 + f" ({args.verify_keys:,} random keys plus up to {args.verify_keys // 2:,} "
                 "the clients rewrote, each compared with its last acknowledged value)")
    if run.verify_examples:
        parts.append("  e.g. " + "; ".join(run.verify_examples[:5]))

    # errors seen by the clients
    examples: dict[int, list[str]] = {}
    for th in threads:
        for o, ex in th.error_examples.items():
            examples.setdefault(o, [])
            for e in ex:
                if e not in examples[o] and len(examples[o]) < 5:
                    examples[o].append(e)
    if examples:
        parts.append("")
        parts.append("Client errors and bad reads seen (examples):")
        for o, ex in sorted(examples.items()):
            n_all = sum(1 for th in threads for r in th.records if r[4] == o)
            parts.append(f"  {OUTCOME_NAMES[o]} ({n_all} in all): " + " | ".join(ex))
    crashes = [f"{th.name}: {th.crash}" for th in threads if th.crash]
    if crashes:
        parts.append("LOAD THREAD CRASHED: " + "; ".join(crashes))
    if run.notes or run.error:
        parts.append("")
        for n in run.notes:
            parts.append(f"NOTE: {n}")
        if run.error:
            parts.append(f"FAILED: {run.error}")
    return "\n".join(parts)


# --------------------------------------------------------------------------- #
# main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time, transfer rate and client latency of adding a 4th node to a "
                    "local 3-node dynamo cluster (N=3 R=2 W=2) holding K keys.")
    p.add_argument("--binary", "--bin", dest="binary", type=Path, default=None,
                   help="dynamo-server binary (default: target/release/dynamo-server "
                        "of this repository; $CARGO_TARGET_DIR is honoured)")
    p.add_argument("--keys", type=int, default=1_000_000,
                   help="K, keys loaded before the join (default 1000000)")
    p.add_argument("--value-bytes", "--data-size", dest="value_bytes", type=int, default=100,
                   help=f"bytes per value (default 100, at least {MIN_VALUE_BYTES})")
    p.add_argument("--rate", type=float, default=1000,
                   help="client requests per second in all, split over the threads "
                        "(default 1000)")
    p.add_argument("--threads", type=int, default=2, help="client threads (default 2)")
    p.add_argument("--set-share", type=float, default=0.2,
                   help="share of SETs in the client load (default 0.2)")
    p.add_argument("--baseline", type=float, default=10,
                   help="seconds of client load measured before node 4 starts (default 10)")
    p.add_argument("--after", type=float, default=10,
                   help="seconds of client load measured after the hand-off (default 10)")
    p.add_argument("--client-timeout", type=float, default=5,
                   help="seconds a client waits for one reply (default 5)")
    p.add_argument("--verify-keys", type=int, default=2000,
                   help="random keys checked through node 4 and node 1 at the end "
                        "(default 2000)")
    p.add_argument("--join-timeout", type=float, default=1800,
                   help="seconds from node 4's start until the ring must be settled "
                        "(default 1800)")
    p.add_argument("--handoff-timeout", type=float, default=1800,
                   help="seconds from the settle until the hand-off must be over "
                        "(default 1800)")
    p.add_argument("--load-timeout", type=float, default=1800,
                   help="seconds the initial load may take (default 1800)")
    p.add_argument("--timeout", type=float, default=7200,
                   help="overall limit in seconds; past it the run stops with an error "
                        "(default 7200)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--keep", "--keep-tmp", dest="keep", action="store_true",
                   help="keep the temp dir (node data, server logs, loader output)")
    a = p.parse_args(argv)
    if not 1 <= a.keys < 10 ** 12:
        p.error("--keys must be between 1 and 10^12 - 1")
    if a.value_bytes < MIN_VALUE_BYTES:
        p.error(f"--value-bytes must be at least {MIN_VALUE_BYTES}")
    if a.threads < 1 or a.rate <= 0 or a.keys < a.threads:
        p.error("--threads >= 1, --rate > 0 and --keys >= --threads")
    if not 0 <= a.set_share <= 1:
        p.error("--set-share must be in [0, 1]")
    return a


class OverallTimeout(Exception):
    pass


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if shutil.which("redis-cli") is None:
        print(f"error: redis-cli not found on PATH; install it with:\n    {APT_HINT}",
              file=sys.stderr)
        return 2
    dynamo_bin = (args.binary or default_bin()).resolve()
    if not (dynamo_bin.is_file() and os.access(dynamo_bin, os.X_OK)):
        print(f"error: {dynamo_bin} not found; build it first with:\n"
              f"    cargo build --release --bin dynamo-server\n(or pass --binary PATH)",
              file=sys.stderr)
        return 2

    def _interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def _alarm(_signum, _frame):
        raise OverallTimeout(f"the run took more than --timeout {args.timeout:g}s")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(max(1, int(args.timeout)))
    deadline = time.perf_counter() + args.timeout - 60  # leave time for the report

    root = Path(tempfile.mkdtemp(prefix="dynamo-rebalance-"))
    # Every node runs this copy: a rebuild of target/release during the run
    # cannot change the binary half way.
    bin_copy = root / "dynamo-server"
    shutil.copy2(dynamo_bin, bin_copy)
    run = Run(keys=args.keys, root=root)
    K = args.keys
    stop = threading.Event()
    threads: list[LoadThread] = []
    pollers: list[Poller] = []
    windows: list[Window] = []
    status = 0
    t_begin = time.perf_counter()
    try:
        try:
            # 1. three nodes
            run.loadavg["start"] = os.getloadavg()[0]
            log(f"starting 3 nodes (N={N} R={R} W={W}, {ENGINE}) under {root}")
            ports = free_ports(2 * OLD_NODES)
            for i in range(OLD_NODES):
                start_node(run, i, bin_copy, ports[i], ports[OLD_NODES + i])
            pollers = [Poller(n.port) for n in run.nodes]
            run.converge_s = wait_settled(run, pollers, OLD_NODES, 60, "the 3-node start")
            log(f"  3 nodes settled after {run.converge_s:.1f}s")
            run.version = info_fields(run.nodes[0].port, "server").get("dynamo_version", "?")

            # 2. the keys
            log(f"loading {K:,} keys ({args.value_bytes}-byte values) through node 1")
            run.load_s = pipe_load(run.nodes[0].port, K, args.value_bytes,
                                   root / "load.log", args.load_timeout)
            log(f"  loaded in {run.load_s:.1f}s ({K / run.load_s:,.0f} SET/s)")
            run.load_settle_s = wait_keys(run, pollers, K, 600, "after the load")
            log(f"  every node stores {K:,} keys {run.load_settle_s:.1f}s later")
            run.before = [p.poll() for p in pollers]

            # 3. client load on nodes 1-3
            t0 = time.perf_counter() + 0.1
            per_thread = args.rate / args.threads
            threads = [LoadThread(i, args.threads, [n.port for n in run.nodes], per_thread, K,
                                  args.value_bytes, args.set_share, args.client_timeout,
                                  stop, t0, args.seed * 1000 + i)
                       for i in range(args.threads)]
            for th in threads:
                th.start()
            warmup = 2.0
            log(f"client load: {args.threads} threads, {args.rate:g} req/s in all; "
                f"{warmup:g}s warm-up, then a {args.baseline:g}s baseline")
            time.sleep(warmup)
            run.cpu["baseline"] = cpu_snapshot(run.nodes)
            time.sleep(args.baseline)
            check_alive(run, "the baseline")

            # 4. node 4
            new_ports = [p for p in free_ports(8) if p not in ports][:2]
            run.cpu["join"] = cpu_snapshot(run.nodes)
            run.t_join = run.cpu["join"].t
            run.loadavg["node 4's start"] = os.getloadavg()[0]
            windows.append(Window("baseline (3 nodes)", run.cpu["baseline"].t, run.t_join,
                                  cpu=(run.cpu["baseline"], run.cpu["join"])))
            log("starting node 4")
            start_node(run, OLD_NODES, bin_copy, new_ports[0], new_ports[1])
            run.t_pong = time.perf_counter()
            pollers.append(Poller(run.nodes[-1].port))
            log(f"  node 4 answered PING after {run.t_pong - run.t_join:.1f}s")
            watch_join(run, pollers, args, deadline)
            end = run.cpu.get("settle") or cpu_snapshot(run.nodes)
            windows.append(Window("join (start -> settled)", run.t_join,
                                  run.t_settle if run.t_settle else end.t,
                                  cpu=(run.cpu["join"], end)))
            if run.t_settle is not None:
                end = run.cpu.get("handoff") or cpu_snapshot(run.nodes)
                windows.append(Window("hand-off (settled -> over)", run.t_settle,
                                      run.t_handoff if run.t_handoff else end.t,
                                      cpu=(run.cpu["settle"], end)))
            if run.t_handoff is not None and args.after > 0:
                log(f"  measuring {args.after:g}s more after the hand-off")
                time.sleep(args.after)
                run.cpu["after"] = cpu_snapshot(run.nodes)
                run.t_after_end = run.cpu["after"].t
                windows.append(Window("after (4 nodes)", run.t_handoff, run.t_after_end,
                                      cpu=(run.cpu["handoff"], run.cpu["after"])))
        finally:
            run.loadavg["the end"] = os.getloadavg()[0]
            stop.set()
            for th in threads:
                th.join(timeout=args.client_timeout + 5)
        check_alive(run, "the run")
        if run.settle_timed_out:
            run.error = "the ring did not settle in time"
        elif run.handoff_timed_out:
            run.error = "the hand-off was not over in time"

        # 5. verification and figures after the run
        if not run.final:
            run.final = [p.poll() for p in pollers]
        else:
            # counters may have moved while the "after" window ran
            later = [p.poll() for p in pollers]
            run.final = [l if l is not None else f for l, f in zip(later, run.final)]
        if len(run.nodes) > OLD_NODES:
            log(f"verifying {args.verify_keys} random keys (and some the clients rewrote) "
                "through node 4 and node 1")
            verify(run, threads, args)
        run.rss_kib = [proc_rss_kib(n.proc.pid) if n.proc else None for n in run.nodes]
        run.disk_bytes = [dir_bytes(n.tmp / "data") for n in run.nodes]
        fill_windows(windows, threads)

        bad_verify = sum(v for c in run.verify.values() for o, v in c.items() if o != OK)
        wrong_live = sum(1 for th in threads for r in th.records if r[4] in BAD_READS)
        stale_live = sum(1 for th in threads for r in th.records if r[4] == STALE)
        errors_live = sum(1 for th in threads for r in th.records if r[4] in ERRORS)
        if errors_live:
            run.notes.append(f"{errors_live} client requests failed during the run "
                             "(see the error columns and examples)")
        if stale_live:
            run.notes.append(f"{stale_live} GETs returned a value older than the key's last "
                             "acknowledged SET")
        if wrong_live:
            run.notes.append(f"{wrong_live} GETs returned nil or a value never written to "
                             "the key")
        if bad_verify:
            run.notes.append(f"the final check: {bad_verify} GETs (over both nodes) did not "
                             "return the expected value")
        if any(th.crash for th in threads):
            run.notes.append("a load thread crashed; its figures stop there")
        if run.error or bad_verify or wrong_live or any(th.crash for th in threads):
            status = 1
        log(f"total {time.perf_counter() - t_begin:.0f}s")
        print()
        print(report(run, windows, threads, args, dynamo_bin, md=False))
        print()
        print("---- Markdown for benches/README.md ----")
        print()
        print(report(run, windows, threads, args, dynamo_bin, md=True))
    except (BenchError, OverallTimeout) as e:
        print(f"error: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the servers", file=sys.stderr)
        status = 130
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        stop.set()
        for p in pollers:
            p.close()
        for p in list(_children):
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        for node in run.nodes:
            stop_server(node)
        if args.keep:
            print(f"temp dir kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
