"""Ingest throughput: many simulated agents posting reports of 40 results to a real collector.

For each store (SQLite, PostgreSQL) this starts real collector processes (uvicorn, no access log) on
loopback, drives POST /api/v1/reports from N concurrent agents (one report per request, keep-alive), and
prints reports/s and latency percentiles beside the baseline: inserting the same rows (reports + results)
straight through the database driver's executemany, the store's own limit. The ratio API/baseline is the
figure to watch; absolute numbers depend on the machine.

    .venv/bin/python benchmarks/ingest.py [--reports 6000] [--agents 64] [--stores sqlite,postgresql]
                                          [--batch 1] [--pg-processes 2]

--parsers times the JSON decoders on the same report bodies instead (stdlib json with today's hooks,
orjson and msgspec when importable) beside today's whole parse_reports, and names the hostile-input probes
on which each would refuse or accept differently from today.

--http-floor adds the floor: the same requests answered by a raw ASGI app and by a bare Starlette app under
the collector's uvicorn settings, nothing behind them (benchmarks/httpfloor.py), and prints each store's
reports/s and CPU per report as a ratio to it: the collector's own cost above what HTTP costs.

--batch N sends N reports per request ({"reports": [...]}, as agents do after an outage); 1 (the default)
is the worst case. "server CPU ms/report" is the collector processes' user+system CPU time over the timed
run divided by the reports: unlike reports/s it barely moves when other work shares the machine. "KiB/rep"
is how much the store grew on disk over the timed run, per report (what docs/en/scale.md sizes disks with).

PostgreSQL: a throw-away database pw_bench_<pid> is created through --pg-url's server and dropped after.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from itertools import zip_longest
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rawhttp import read_response, wait_ready  # noqa: E402  (beside this script)

REGION = "甘肃省/兰州市/城关区/基准镇"


# -- the simulated fleet -------------------------------------------------------------------------------
def make_report(point: str, agent_id: str, seq: int, n_results: int) -> dict:
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    checks = ("net.core.icmp", "net.core.tcp", "device.printer", "usage.processes", "host.resources")
    return {
        "report_id": str(uuid.uuid4()), "seq": seq, "agent_id": agent_id, "point_code": point,
        "agent_version": "0.1.0", "collected_at": now, "sent_at": now,
        "host": {"hostname": f"pc-{point}", "os": "Windows 10", "boot_time": None,
                 "fingerprint": {"machine_id": f"m-{point}", "serial": "SN", "macs": ["00:11:22:33:44:55"]}},
        "results": [{"check": checks[i % len(checks)], "target": f"目标{i}", "status": "ok" if i % 7 else "warn",
                     "message": "正常", "value": 0.01 * i, "unit": "seconds", "details": {"loss_ratio": 0.0},
                     "observed_at": now, "duration_ms": 3.0} for i in range(n_results)],
    }


def setup_fleet(url: str, n_points: int) -> dict[str, str]:
    from collector.accounts import users
    from collector.store import Store, points

    store = Store(url)
    store.upgrade()
    tokens = {}
    for i in range(n_points):
        code = f"9{i:011d}"
        points.upsert_point(store, code, f"基准点{i}", REGION)
        tokens[code] = users.create_token(store, "agent", point_code=code)
    store.close()
    return tokens


# -- a minimal keep-alive HTTP/1.1 client (the load generator must cost less than the server) -----------
async def agent_loop(port: int, sends: list[tuple[str, bytes]], latencies: list[float], errors: list[str]):
    """One connection sending (token, body) pairs in turn: with --points above --agents an agent sends for
    several points, each with its own token (as one keep-alive client would for a share of the fleet)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    heads = {token: (f"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer "
                     f"{token}\r\nContent-Type: application/json\r\n").encode() for token, _ in sends}
    try:
        for token, body in sends:
            t0 = time.perf_counter()
            writer.write(heads[token] + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            status_line, payload = await read_response(reader)
            latencies.append(time.perf_counter() - t0)
            if b" 202 " not in status_line:
                errors.append(status_line.decode().strip() + " " + payload[:200].decode(errors="replace"))
    finally:
        writer.close()


def server_cpu_s(procs) -> float:
    """user+system CPU seconds of these processes so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for p in procs:
        try:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0
    return total


async def drive(ports: list[int], plan: list[list[tuple[str, bytes]]]):
    """``plan``: per agent, the (token, body) pairs it sends in order."""
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(agent_loop(ports[i % len(ports)], sends, latencies, errors)
                           for i, sends in enumerate(plan)))
    return time.perf_counter() - t0, latencies, errors


# -- collector processes -----------------------------------------------------------------------------
def serve_main(data_dir: str, port: int, config: str | None = None) -> None:
    from collector.cli.serve import serve
    from collector.settings import Settings

    settings = Settings.load(config, data_dir)
    if os.environ.get("PW_BENCH_HEAP_LOG"):  # Python's own heap, to tell a leak from allocator growth
        import threading

        def heap_log():
            with open(os.environ["PW_BENCH_HEAP_LOG"], "a", encoding="utf-8") as f:
                while True:
                    time.sleep(30)
                    f.write(f"{time.monotonic():.0f} python_blocks={sys.getallocatedblocks()}\n")
                    f.flush()
        threading.Thread(target=heap_log, daemon=True).start()
    app = None
    if os.environ.get("PW_BENCH_NO_HOOKS"):  # --no-hooks: ingest alone, no alert or score workers
        from collector.app import create_app
        from collector.ingest.pipeline import PointsChanged

        app = create_app(settings)
        app.state.reports.points_changed = PointsChanged()  # nobody to tell
        app.state.services.clear()
    serve(settings, "127.0.0.1", port, app=app, access_log=False)


def start_servers(url: str, data_dir: Path, n: int, no_hooks: bool = False,
                  floor: str | None = None) -> tuple[list[subprocess.Popen], list[int]]:
    """``n`` collector processes on ``url``; with ``floor``, one floor app of that kind instead (httpfloor.py)."""
    import socket

    procs, ports = [], []
    for i in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "POINTWATCH_DATABASE_URL": url}
        if no_hooks:
            env["PW_BENCH_NO_HOOKS"] = "1"
        d = data_dir / f"c{i}"
        d.mkdir(parents=True, exist_ok=True)
        argv = ["--serve-floor", floor, str(port)] if floor else ["--serve", str(d), str(port)]
        procs.append(subprocess.Popen([sys.executable, __file__, *argv], env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(d / "log.txt", "wb")))  # noqa: SIM115
        ports.append(port)
    for port, proc in zip(ports, procs, strict=True):
        wait_ready(port, proc, 30, f"see its log in {data_dir}")
    return procs, ports


# -- baseline: the same rows through the driver's executemany ----------------------------------------------
def baseline(url: str, reports: list[dict], chunk: int = 50) -> float:
    rows = []
    for r in reports:
        body = json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        rows.append((r, body))
    rec = datetime.now(timezone.utc)
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split("///", 1)[1])
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        ph, ret = "?", ""
    else:
        import psycopg

        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        ph, ret = "%s", " RETURNING id"
    rep_sql = ("INSERT INTO reports (report_id, point_code, agent_id, seq, collected_at, sent_at, received_at, "
               "agent_version, host, body, prev_digest, digest) VALUES (" + ",".join([ph] * 12) + ")" + ret)
    res_sql = ("INSERT INTO results (report_pk, point_code, \"check\", target, status, value, unit, message, "
               "details, observed_at, received_at) VALUES (" + ",".join([ph] * 11) + ")")
    t0 = time.perf_counter()
    cur = conn.cursor()
    for i, (r, body) in enumerate(rows):
        cur.execute(rep_sql, (str(uuid.uuid4()), r["point_code"], r["agent_id"], r["seq"], rec, rec, rec,
                              r["agent_version"], json.dumps(r["host"]), body, "0" * 64, "1" * 64))
        pk = cur.lastrowid if url.startswith("sqlite") else cur.fetchone()[0]
        cur.executemany(res_sql, [(pk, r["point_code"], x["check"], x["target"], x["status"], x["value"], x["unit"],
                                   x["message"], json.dumps(x["details"]), rec, rec) for x in r["results"]])
        if (i + 1) % chunk == 0:
            conn.commit()
    conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(rows) / elapsed


# -- parse candidates: the same bodies through each JSON decoder, and whether it keeps the refusals ------
PROBES = [  # (body, a word the refusal must name; None: accepted here, cleaned or judged after parsing)
    (b'{"seq": NaN}', "NaN"), (b'{"seq": Infinity}', "Infinity"), (b'{"seq": 1e999}', "1e999"),
    (b'{"seq": 1' + b"0" * 5000 + b"}", "digits"), (b"[" * 100_000, "nested"),
    (b'{"a": "\\udcff"}', None), (b'{"a": "x\\u0000"}', None), (b'{"a": 123456789012345678901234567890}', None),
]


def parse_candidates(n_results: int, rounds: int = 7) -> None:
    """Per report: each decoder alone, and the whole of today's parse_reports (decode + pydantic + checks)."""
    from collector.ingest import accept

    bodies = [json.dumps(make_report(f"9{i:011d}", str(uuid.uuid4()), i, n_results), ensure_ascii=False).encode()
              for i in range(300)]
    cands = {"stdlib json + hooks (today)": lambda b: json.loads(
        b, parse_constant=accept._reject_constant, parse_float=accept._finite_float)}
    try:
        import orjson

        cands[f"orjson {orjson.__version__}"] = orjson.loads
    except ImportError:
        print("orjson: not installed (pip install --target DIR orjson; PYTHONPATH=DIR)")
    try:
        import msgspec

        cands[f"msgspec {msgspec.__version__}"] = msgspec.json.Decoder().decode
    except ImportError:
        print("msgspec: not installed")
    cands["parse_reports (decode + validation, today)"] = accept.parse_reports

    def per_report(fn):
        times = []
        for _ in range(rounds):
            t0 = time.process_time()
            for b in bodies:
                fn(b)
            times.append((time.process_time() - t0) / len(bodies))
        return statistics.median(times)

    base = per_report(next(iter(cands.values())))
    print(f"\nparse candidates: {n_results} results per report, median of {rounds} rounds over {len(bodies)} bodies")
    print(f"{'decoder':<44}{'ms/report':>10}{'ratio':>7}  probes where it differs from today's refusal or acceptance")
    for name, fn in cands.items():
        differs = []
        for raw, word in PROBES[:-3] if fn is accept.parse_reports else PROBES:  # the last three: no reports
            try:
                fn(raw)
                same = word is None
            except RecursionError:  # parse_reports names it "nested too deeply" whichever decoder raised it
                same = word == "nested"
            except Exception as exc:  # noqa: BLE001 - any refusal counts; its text is what is compared
                same = word is not None and word in str(getattr(exc, "detail", exc))
            if not same:
                differs.append(raw[:24].decode(errors="replace"))
        ms = 1000 * per_report(fn)
        print(f"{name:<44}{ms:>10.3f}{ms / (1000 * base):>7.2f}  {', '.join(differs) or 'none'}")


# -- one timed run: the same plan for a store and for the floor -------------------------------------------
def make_plan(tokens: dict[str, str], args) -> tuple[list[list[tuple[str, bytes]]], list[dict]]:
    """Per agent, what it sends: the points are dealt round the agents, and each agent sends for its
    points in turn, so every point gets about ``--reports / --points`` reports."""
    codes = list(tokens)
    per_point = max(1, args.reports // len(codes))
    plan: list[list[tuple[str, bytes]]] = [[] for _ in range(min(args.agents, len(codes)))]
    all_reports = []
    for k, agent_codes in enumerate(codes[i::len(plan)] for i in range(len(plan))):
        ids = {code: str(uuid.uuid4()) for code in agent_codes}
        for code, reps in ((c, [make_report(c, ids[c], s + 1, args.results) for s in range(per_point)])
                           for c in agent_codes):
            all_reports.extend(reps)
            if args.batch == 1:
                bodies = [json.dumps(r, ensure_ascii=False).encode() for r in reps]
            else:
                bodies = [json.dumps({"reports": reps[i:i + args.batch]}, ensure_ascii=False).encode()
                          for i in range(0, len(reps), args.batch)]
            plan[k].append([(tokens[code], b) for b in bodies])
    # interleaved: an agent's points take turns (the i-th report of each before any point's next one)
    plan = [[send for turn in zip_longest(*per_code) for send in turn if send is not None] for per_code in plan]
    return plan, all_reports


def timed_run(procs, ports, plan, tokens, args, what: str, n_reports: int) -> dict:
    """Warm up (one report per agent), then drive the plan; stops the processes. Rate, latency, CPU, load."""
    codes = list(tokens)
    agents = len(plan)
    warm = [[(tokens[c], json.dumps(make_report(c, "warm", 0, args.results)).encode()) for c in codes[i::agents]]
            for i in range(agents)]
    asyncio.run(drive(ports, warm))
    load_before = os.getloadavg()[0]
    cpu0 = server_cpu_s(procs)
    elapsed, lat, errors = asyncio.run(drive(ports, plan))
    cpu = server_cpu_s(procs) - cpu0
    load_after = os.getloadavg()[0]
    if errors:
        print(f"  {what}: {len(errors)} failed requests, e.g. {errors[0]}", file=sys.stderr)
    for p in procs:
        p.terminate()
    for p in procs:  # what was measured is in; a collector still finishing a long alert pass is not waited for
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            print(f"  {what}: collector {p.pid} still busy 30 s after SIGTERM; killed", file=sys.stderr)
            p.kill()
            p.wait(10)
    lat.sort()
    n = len(lat)
    return {"rate": n_reports / elapsed, "cpu_ms": 1000 * cpu / n_reports, "load": (load_before, load_after),
            "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[min(n - 1, int(n * 0.99))],
            "errors": len(errors)}


def run_floor(kind: str, args) -> dict:
    """The same plan against a floor app (httpfloor.py): one process, no store, any token."""
    tmp = Path(tempfile.mkdtemp(prefix="pw-floor-"))
    procs = []
    try:
        tokens = {f"9{i:011d}": "floor" for i in range(args.points or args.agents)}
        plan, reports = make_plan(tokens, args)
        procs, ports = start_servers("", tmp, 1, floor=kind)
        out = timed_run(procs, ports, plan, tokens, args, f"floor {kind}", len(reports))
        procs = []
        return {**out, "store": f"floor:{kind}"}
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


# -- one store -----------------------------------------------------------------------------------------
def store_bytes(url: str) -> int:
    """The store's size on disk: the SQLite file with its WAL, or the PostgreSQL database."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
        db.execute("CHECKPOINT")
        return db.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def run_store(kind: str, args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="pw-bench-"))
    dbname = None
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'pointwatch.db'}"
        processes = args.sqlite_processes  # one by design; more only to measure (WAL + busy timeout)
    else:
        import psycopg

        dbname = f"pw_bench_{os.getpid()}_{secrets.token_hex(2)}"
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        url = "postgresql+psycopg://" + args.pg_url.split("://", 1)[1].rsplit("/", 1)[0] + "/" + dbname
        processes = args.pg_processes
    procs = []
    try:
        tokens = setup_fleet(url, args.points or args.agents)
        plan, all_reports = make_plan(tokens, args)
        procs, ports = start_servers(url, tmp, processes, args.no_hooks)
        disk0 = store_bytes(url)
        out = timed_run(procs, ports, plan, tokens, args, kind, len(all_reports))
        procs = []
        disk = store_bytes(url) - disk0
        return {**out, "store": kind, "processes": processes, "reports": len(all_reports),
                "baseline": baseline(url, all_reports), "disk_kb": disk / 1024 / len(all_reports)}
    finally:
        for p in procs:
            p.kill()
        if dbname:
            import psycopg

            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--serve":  # DATA_DIR PORT [CONFIG] (load.py gives one)
        serve_main(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) == 5 else None)
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-floor":  # KIND PORT (httpfloor.py)
        from httpfloor import serve_floor

        serve_floor(sys.argv[2], int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", type=int, default=6000, help="reports per store (bounded load)")
    ap.add_argument("--agents", type=int, default=64, help="concurrent simulated agents (one point each)")
    ap.add_argument("--points", type=int, default=0,
                    help="points in the fleet (default: one per agent); more than --agents deals them round "
                         "the agents, so each point reports seldom, as in a province, not many times a second")
    ap.add_argument("--results", type=int, default=40, help="results per report")
    ap.add_argument("--sqlite-processes", type=int, default=1,
                    help="collector processes on the one SQLite file (the design is 1; more to measure)")
    ap.add_argument("--batch", type=int, default=1, help="reports per request (1: the worst case)")
    ap.add_argument("--stores", default="sqlite,postgresql", help="comma-separated; none: the floor alone")
    ap.add_argument("--http-floor", action="store_true",
                    help="also time the same requests against a raw ASGI and a bare Starlette app (httpfloor.py)")
    ap.add_argument("--no-hooks", action="store_true",
                    help="diagnostic: collectors without the post-commit alert and score workers")
    ap.add_argument("--pg-url", default=os.environ.get("POINTWATCH_TEST_PG",
                                                       "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--pg-processes", type=int, default=2,
                    help="collector processes sharing the PostgreSQL store (SQLite always has one)")
    ap.add_argument("--parsers", action="store_true",
                    help="instead: time JSON decoders side by side on the same bodies (no collector)")
    args = ap.parse_args()
    if args.parsers:
        parse_candidates(args.results)
        return 0
    rows = [run_store(kind, args) for kind in args.stores.split(",") if kind != "none"]
    floors = []
    if args.http_floor:
        from httpfloor import KINDS

        floors = [run_floor(kind, args) for kind in KINDS]
    print(f"\ningest benchmark: {args.agents} concurrent agents for {args.points or args.agents} points, "
          f"{args.results} results per report, "
          f"{args.batch} report(s) per request, loopback, {os.cpu_count()} CPUs")
    print(f"{'store':<11}{'procs':>6}{'reports':>9}{'reports/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'cpu ms/rep':>11}{'KiB/rep':>9}{'baseline/s':>12}{'ratio':>8}{'load 1m':>12}")
    for r in rows:
        print(f"{r['store']:<11}{r['processes']:>6}{r['reports']:>9}{r['rate']:>11.0f}{r['p50_ms']:>9.1f}"
              f"{r['p99_ms']:>9.1f}{r['cpu_ms']:>11.2f}{r['disk_kb']:>9.1f}{r['baseline']:>12.0f}{r['rate'] / r['baseline']:>8.2f}"
              f"{r['load'][0]:>6.1f}→{r['load'][1]:<4.1f}")
    if floors:
        print("\nHTTP floor: the same requests, one uvicorn process as the collector's, nothing behind it")
        print(f"{'app':<16}{'reports/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms/rep':>11}{'load 1m':>12}"
              + "".join(f"{r['store'] + ' rate':>14}{'cpu above':>11}{'cpu ×':>7}" for r in rows))
        for f in floors:
            print(f"{f['store'][6:]:<16}{f['rate']:>11.0f}{f['p50_ms']:>9.1f}{f['p99_ms']:>9.1f}{f['cpu_ms']:>11.3f}"
                  f"{f['load'][0]:>6.1f}→{f['load'][1]:<4.1f}" + "".join(
                      f"{r['rate'] / f['rate']:>14.2f}{r['cpu_ms'] - f['cpu_ms']:>11.2f}{r['cpu_ms'] / f['cpu_ms']:>7.1f}"
                      for r in rows))
        if rows:
            print("<store> rate: its reports/s over the floor's; cpu above: its CPU ms/report minus the floor's; "
                  "cpu ×: their ratio")
    print("baseline: the same reports + results rows through the driver's executemany, no HTTP, no checks")
    print("KiB/rep: growth of the store on disk over the timed run (SQLite file + WAL; PostgreSQL database "
          "after a CHECKPOINT, tables and indexes), per report")
    return 1 if any(r["errors"] for r in rows + floors) else 0


if __name__ == "__main__":
    sys.exit(main())
