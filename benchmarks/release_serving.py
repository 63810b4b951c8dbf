"""Serving a 50 MB agent release to a few agents at once: the collector's memory, chunks from the database
against the same file from disk.

Sets up a store (a temporary SQLite file, or with ``--store postgresql`` a database of its own on the
``--pg-url`` server, dropped at the end) with one point, a policy
naming the release, an agent token and the release added as ``agent-release add`` adds it (its bytes in
``agent_release_chunks``). Then, in turns, starts a fresh collector process (the real app under uvicorn) and
has ``--downloads`` agents download the whole file at the same moment:

- ours: ``GET /api/v1/agent/releases/{version}/{platform}/file``, streamed from the chunks;
- the baseline: the same app with one more route streaming the same file from a disk file in 1 MiB reads
  (how the collector served it before the file travelled with the database).

The collector's RSS is sampled every 10 ms from before the downloads to their end; every download's sha256
is compared with the release's. Prints per turn the peak RSS, its growth over the idle process and the wall
time, then the medians and the ratios ours/baseline.

    .venv/bin/python benchmarks/release_serving.py [--size-mb 50] [--downloads 4] [--runs 3]
        [--store postgresql [--pg-url postgresql://postgres@127.0.0.1:5432/test]]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psutil  # noqa: E402

from benchmarks.rawhttp import wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POINT, REGION = "620102001001", "甘肃省/兰州市/城关区/某镇/某村"
VERSION, PLATFORM = "0.9.1", "linux-x86_64"
PIECE = 1024 * 1024


def serve(args) -> None:
    """The collector process of one turn: the real app, plus the baseline's disk route."""
    import uvicorn
    from fastapi.responses import StreamingResponse

    from collector.app import create_app
    from collector.settings import Settings

    settings = Settings.load(str(Path(args.data) / "collector.yaml"), args.data)
    app = create_app(settings, store=settings.open_store(serving=True))
    path = args.disk_file

    def from_disk():
        with open(path, "rb") as fh:
            while data := fh.read(PIECE):
                yield data

    @app.get("/bench/disk")
    async def disk():
        return StreamingResponse(from_disk(), media_type="application/octet-stream",
                                 headers={"Content-Length": str(os.path.getsize(path))})

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def setup(work: Path, size: int, database_url: str | None) -> tuple[str, Path, str]:
    """(agent token, the release file on disk, its sha256), the release added to the store."""
    import yaml

    from collector.accounts import users
    from collector.policy import service as policy_service
    from collector.releases import manifest as mf
    from collector.releases import service as releases
    from collector.settings import Settings
    from collector.store import points
    from collector.store.audit import Actor

    data = work / "data"
    data.mkdir()
    private = work / "release.pem"
    key = mf.keygen(private)
    config = {"agent_releases": {"public_keys": [key["public_key"]]}, "retention": {"interval_s": 3600},
              **({"database_url": database_url} if database_url else {})}
    (data / "collector.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = Settings.load(str(data / "collector.yaml"), str(data))
    store = settings.open_store()
    points.upsert_point(store, POINT, "基准服务点", REGION)
    policy_service.set_region(store, REGION, f"agent: {{version: '{VERSION}', window: '00:00-24:00'}}\n", "b.yaml",
                              Actor("bench"))
    token = users.create_token(store, "agent", point_code=POINT)
    build = work / "pointwatch-agent"
    h = hashlib.sha256()
    with open(build, "wb") as out:
        for _ in range(size // PIECE):
            piece = os.urandom(PIECE)
            h.update(piece)
            out.write(piece)
    (work / "pointwatch-agent.release.json").write_bytes(mf.sign(build, VERSION, PLATFORM, mf.load_private(private)))
    releases.add(store, settings.data_dir, settings.agent_releases(), str(build), VERSION, PLATFORM, None,
                 Actor("bench"))
    store.close()
    return token, build, h.hexdigest()


def turn(mode: str, work: Path, token: str, build: Path, sha256: str, downloads: int) -> dict:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(work / f"collector-{mode}.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--data", str(work / "data"), "--port", str(port),
                             "--disk-file", str(build)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    try:
        wait_ready(port, proc, 60, "see the log in the work dir")
        ps = psutil.Process(proc.pid)
        time.sleep(1.0)
        idle = ps.memory_info().rss
        url = (f"http://127.0.0.1:{port}/api/v1/agent/releases/{VERSION}/{PLATFORM}/file" if mode == "chunks"
               else f"http://127.0.0.1:{port}/bench/disk")
        peak, done, digests = idle, threading.Event(), []

        def sample():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, ps.memory_info().rss)
                time.sleep(0.01)

        def download(barrier):
            h = hashlib.sha256()
            with httpx.Client(timeout=120) as client:
                barrier.wait()
                with client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as r:
                    r.raise_for_status()
                    for piece in r.iter_bytes(256 * 1024):
                        h.update(piece)
            digests.append(h.hexdigest())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        barrier = threading.Barrier(downloads)
        threads = [threading.Thread(target=download, args=(barrier,)) for _ in range(downloads)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        if digests != [sha256] * downloads:
            raise SystemExit(f"{mode}: a download's sha256 is not the release's: {digests}")
        return {"peak": peak, "growth": peak - idle, "wall": wall}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--downloads", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("POINTWATCH_TEST_PG",
                                                       "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--disk-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args)
    database_url = dbname = None
    if args.store == "postgresql":
        import psycopg

        dbname = f"pw_release_serving_{os.getpid()}"
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        database_url = "postgresql+psycopg://" + args.pg_url.split("://", 1)[1].rsplit("/", 1)[0] + "/" + dbname
    try:
        run_all(args, database_url)
    finally:
        if dbname:
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def run_all(args, database_url: str | None) -> None:
    mb = 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="pw-release-serving-") as tmp:
        work = Path(tmp)
        token, build, sha256 = setup(work, args.size_mb * mb, database_url)
        print(f"release {args.size_mb} MiB, {args.downloads} concurrent downloads, {args.store}", flush=True)
        got: dict[str, list[dict]] = {"disk": [], "chunks": []}
        for run in range(args.runs):
            for mode in ("disk", "chunks"):  # interleaved: the machine's load falls on both alike
                r = turn(mode, work, token, build, sha256, args.downloads)
                got[mode].append(r)
                print(f"run {run + 1} {mode:6}: peak RSS {r['peak'] / mb:7.1f} MiB, growth {r['growth'] / mb:6.1f} MiB,"
                      f" wall {r['wall']:6.2f} s", flush=True)
        med = {mode: {k: statistics.median(r[k] for r in rs) for k in ("peak", "growth", "wall")}
               for mode, rs in got.items()}
        for mode in ("disk", "chunks"):
            print(f"median {mode:6}: peak RSS {med[mode]['peak'] / mb:7.1f} MiB, growth "
                  f"{med[mode]['growth'] / mb:6.1f} MiB, wall {med[mode]['wall']:6.2f} s")
        print(f"ratio chunks/disk: peak RSS {med['chunks']['peak'] / med['disk']['peak']:.2f}, growth "
              f"{med['chunks']['growth'] / max(med['disk']['growth'], 1):.2f}, wall "
              f"{med['chunks']['wall'] / med['disk']['wall']:.2f}")


if __name__ == "__main__":
    main()
