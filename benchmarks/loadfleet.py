"""The collector side of load.py: N collector processes on one store, each with a webhook notifier pointing
at a receiver inside the benchmark; the fault plan that makes alerts open and resolve during the run; and
the checks that alerts, notifications and scores stay single however many collectors share the database.

The fault: a share of the simulated agents report ``isolation.internet`` as fail (the internet is reachable
from the 专网 PC) for a few intervals, then ok again. The rule ``internet_reachable`` pages on the first
such report and resolves on the first clean one, so each planned fault is one alert episode: one alert row,
one "firing" and one "resolved" notification. After the load, the silence phase lets every point fall
silent, so every collector's timer finds every point due at once (the one place several collectors race
on the same points): one ``point_silent`` alert and one "firing" notification per point.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FAULT_RULE = "internet_reachable"  # isolation.internet fail: critical, fires at once, resolves at once
FAULT_TARGET = "223.5.5.5:53"  # the isolation.internet target load.py's faulty reports fail
SILENT_RULE = "point_silent"
# What the collectors log when background work fails (their WARNING/ERROR lines go to their log file).
FAILURE_EVENT = re.compile(r"\b([a-z_]+_(?:failed|crashed))\b")


class Receiver:
    """A webhook target: records (alert id, event, point, rule) of every notification it is sent."""

    def __init__(self):
        self.got: list[tuple[int, str, str, str]] = []
        self.bad = 0
        lock = threading.Lock()
        outer = self

        class Hook(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    p = json.loads(body)
                    entry = (int(p["alert_id"]), str(p["event"]), str(p["point_code"]), str(p["rule"]))
                except (ValueError, KeyError, TypeError):
                    entry = None
                with lock:
                    if entry is None:
                        outer.bad += 1
                    else:
                        outer.got.append(entry)
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fault_plan(codes: list[str], share: float, duration: float, interval: float,
               rng: random.Random) -> dict[str, tuple[float, float]]:
    """code -> (from, until) seconds into the run during which that agent reports the fault: 3 to 6
    intervals, starting in the run's second sixth to its second half, over before three quarters of it."""
    plan = {}
    for code in rng.sample(codes, round(len(codes) * share)):
        start = rng.uniform(0.15, 0.45) * duration
        plan[code] = (start, min(start + rng.uniform(3, 6) * interval, 0.75 * duration))
    return plan


def start_collectors(n: int, tmp: Path, env: dict, receiver_url: str) -> tuple[list, list[int], list[Path]]:
    """N collector processes (benchmarks/ingest.py --serve: uvicorn without access log) with the webhook
    notifier; the first one's data directory is tmp/data (where load.py puts an SQLite store)."""
    import socket

    from rawhttp import wait_ready

    config = {"alerts": {"notifiers": [{"name": "bench-receiver", "type": "webhook", "url": receiver_url,
                                        "timeout": "5s"}]}}
    procs, ports, logs = [], [], []
    for i in range(n):
        data = tmp / ("data" if i == 0 else f"data{i}")
        data.mkdir(exist_ok=True)
        cfg = tmp / f"collector{i}.yaml"
        cfg.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        logs.append(tmp / f"collector{i}.log")
        with open(logs[-1], "wb") as log:
            procs.append(subprocess.Popen([sys.executable, str(BENCH / "ingest.py"), "--serve", str(data),
                                           str(port), str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=BENCH.parent))
        ports.append(port)
    for i, (port, proc) in enumerate(zip(ports, procs, strict=True)):
        wait_ready(port, proc, 60, f"its log: {logs[i]}")
    return procs, ports, logs


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sqlite_mib(db: Path | None) -> tuple[float, float] | None:
    """The SQLite store's database file and WAL, MiB: a WAL that only grows is a checkpoint that never ends."""
    if db is None:
        return None
    sizes = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            sizes.append(path.stat().st_size / 2**20)
        except OSError:
            sizes.append(0.0)
    return sizes[0], sizes[1]


def pg_connections(admin_url: str, dbname: str) -> int:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchone()[0]


def log_failures(path: Path) -> Counter:
    """Failures in one collector's log, by event name (rescore_failed, alert_evaluation_failed, ...) or, for
    a traceback with no such name before it, by the exception it ends with."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return Counter()
    found: Counter = Counter()
    named = False
    for i, line in enumerate(lines):
        if match := FAILURE_EVENT.search(line):
            found[match.group(1)] += 1
            named = True
        elif line.startswith("Traceback"):
            if not named:
                end = next((x for x in lines[i + 1:] if x and not x.startswith(" ")), "?")
                found["traceback: " + end[:120]] += 1
            named = False
        elif line and not line.startswith((" ", "The above exception", "During handling")):
            named = False  # (a chained exception's second traceback belongs to the same failure)
    return found


def outbox_busy(store) -> int:
    from sqlalchemy import func, select

    from collector.store import models as m

    with store.session() as s:
        return s.scalar(select(func.count()).select_from(m.Notification)
                        .where(m.Notification.status.in_(("queued", "sending"))))


def settle(url: str, silence_phase: bool, interval: float) -> float:
    """Wait until the outbox is empty (and, with the silence phase, every point that reported has a silent
    alert that was sent); returns the seconds waited."""
    from sqlalchemy import func, select

    from collector.store import Store
    from collector.store import models as m

    store = Store(url)
    t0 = time.monotonic()
    deadline = t0 + (3 * interval + 90 if silence_phase else 30)
    try:
        while time.monotonic() < deadline:
            with store.session() as s:
                silent = s.scalar(select(func.count()).select_from(m.Alert).where(
                    m.Alert.rule == SILENT_RULE, m.Alert.state == "firing", m.Alert.notified_at.is_not(None)))
                reported = s.scalar(select(func.count()).select_from(m.PointState).where(
                    m.PointState.last_received_at.is_not(None)))
            if outbox_busy(store) == 0 and (not silence_phase or silent >= reported):
                break
            time.sleep(1)
        time.sleep(2)  # one more dispatcher pass: a duplicate would show up now, not after we counted
    finally:
        store.close()
    return time.monotonic() - t0


def singleness(url: str, receiver: Receiver, codes: list[str], plan: dict, silence_phase: bool,
               interval: float) -> list[str]:
    """Print the single-ness figures; return the checks that failed (empty: all single)."""
    from sqlalchemy import select

    from collector.store import Store
    from collector.store import models as m

    store = Store(url)
    try:
        with store.session() as s:
            alerts = s.query(m.Alert.id, m.Alert.fingerprint, m.Alert.rule, m.Alert.point_code, m.Alert.state,
                             m.Alert.notified_at).all()
            outbox = s.query(m.Notification.alert_id, m.Notification.event, m.Notification.status).all()
            scores = Counter(code for (code,) in s.query(m.PointScore.point_code))
            # The store's own word on each fault: the point's latest result of the faulty check.
            faulty_now = dict(s.execute(select(m.LatestResult.point_code, m.LatestResult.status).where(
                m.LatestResult.check == "isolation.internet", m.LatestResult.target == FAULT_TARGET)).all())
            faults_stored = set(s.scalars(select(m.Result.point_code).where(
                m.Result.check == "isolation.internet", m.Result.status == "fail").distinct()))
            received = s.execute(select(m.Report.point_code, m.Report.received_at)
                                 .order_by(m.Report.point_code, m.Report.received_at)).all()
    finally:
        store.close()
    failed = []

    def check(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            failed.append(what)

    by_id = {a.id: a for a in alerts}
    fault = [a for a in alerts if a.rule == FAULT_RULE]
    silent = [a for a in alerts if a.rule == SILENT_RULE]
    other = Counter(a.rule for a in alerts if a.rule not in (FAULT_RULE, SILENT_RULE))
    # A silence episode needs a gap of more than 3 intervals between two reports, or the end of the run.
    gaps = Counter(a.point_code for a, b in zip(received, received[1:], strict=False)
                   if a.point_code == b.point_code and (b.received_at - a.received_at).total_seconds() > 3 * interval)
    print(f"alerts: {len(alerts)} rows; {FAULT_RULE} {len(fault)} for {len(plan)} planned faults, "
          f"{len(faults_stored)} of which reached the store ({sum(a.state == 'resolved' for a in fault)} resolved); "
          f"{SILENT_RULE} {len(silent)} for {len(codes)} points ({sum(gaps.values())} silences of more than 3 "
          f"intervals during the load); other rules {dict(other) or 'none'}")
    per_fault_point = Counter(a.point_code for a in fault)
    check(max(per_fault_point.values(), default=0) <= 1 and set(per_fault_point) <= faults_stored,
          f"one {FAULT_RULE} alert per fault episode, only where the fault was reported "
          f"(points with more: {sum(n > 1 for n in per_fault_point.values())})")
    wrong_state = [a.id for a in fault if (a.state == "resolved") != (faulty_now.get(a.point_code) == "ok")]
    check(not wrong_state, f"each {FAULT_RULE} alert resolved exactly where the point's latest result is clean "
          f"({len(wrong_state)} not)")
    open_fault = {a.point_code for a in fault if a.state != "resolved"}
    missed = sorted(c for c, status in faulty_now.items() if status == "fail" and c not in open_fault)
    check(not missed, f"an open {FAULT_RULE} alert on every point whose latest result shows the fault "
          f"({len(missed)} without)")
    per_silent_point = Counter(a.point_code for a in silent)
    extra = {c: n for c, n in per_silent_point.items() if n > gaps[c] + 1}
    check(not extra, f"no more {SILENT_RULE} episodes than silences (points with more: {len(extra)}"
          + (f", e.g. {next(iter(extra.items()))}" if extra else "") + ")")
    if silence_phase:  # a point that never got a report through is not silent: it was never installed
        reported = {r.point_code for r in received}
        still = Counter(a.point_code for a in silent if a.state == "firing" and a.notified_at)
        check(set(still) == reported and max(still.values(), default=1) == 1,
              f"every point that reported is silent at the end, once, and paged ({len(still)} of {len(reported)})")

    got = Counter((aid, event) for aid, event, _, _ in receiver.got)
    queued = Counter((n.alert_id, n.event) for n in outbox)
    print(f"notifications received: {len(receiver.got)} ({sum(e == 'firing' for _, e, _, _ in receiver.got)} "
          f"firing, {sum(e == 'resolved' for _, e, _, _ in receiver.got)} resolved), unreadable {receiver.bad}; "
          f"outbox rows {len(outbox)}, not sent {sum(n.status != 'sent' for n in outbox)}")
    wrong = []
    for a in alerts:
        want = {"firing": int(a.notified_at is not None),
                "resolved": int(a.notified_at is not None and a.state == "resolved")}
        for event, n in want.items():
            if got[(a.id, event)] != n or queued[(a.id, event)] != n:
                wrong.append((a.id, a.rule, a.point_code, event, n, got[(a.id, event)], queued[(a.id, event)]))
    strays = sorted({aid for aid, _ in got} - set(by_id))
    check(not wrong, "exactly one firing and one resolved notification per paged alert, received and queued"
          + (f" ({len(wrong)} wrong, e.g. (id, rule, point, event, want, received, queued) = {wrong[0]})"
             if wrong else ""))
    check(not strays and receiver.bad == 0, f"no notification for an alert the store does not hold ({len(strays)})")
    check(all(n.status == "sent" for n in outbox), "every queued notification sent")

    print(f"point scores: {sum(scores.values())} rows for {len(codes)} points")
    check(max(scores.values(), default=0) <= 1 and set(codes) <= set(scores),
          "one score row per point, every point scored")
    return failed
