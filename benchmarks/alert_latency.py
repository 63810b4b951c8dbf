"""Alert latency: from a faulty report's ingest to the notifier's receipt, through a real collector process.

Starts ``pointwatch-collector serve`` on a free loopback port with a webhook notifier pointing at a local
HTTP receiver, registers points and agent tokens with the CLI, keeps background points reporting, then
sends a stream of faults (each a report that shows a fault which pages on its first report) and resolves
each again. Prints the median and p95 delay beside the points' check interval, as a ratio (the budget:
an alert within one interval), and beside the plain ingest round trip measured in the same run.

    .venv/bin/python benchmarks/alert_latency.py [--faults 40] [--points 50]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.wire import Fingerprint, Host, Report, Result, report_to_json  # noqa: E402

INTERVAL_S = 60  # the points' report interval (the registry default)
FAULTS = [("isolation.internet", "互联网隔离"), ("usage.processes", "禁用软件"),
          ("usage.removable_media", "移动存储"), ("usage.listening_ports", "监听端口")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    def __init__(self):
        self.got: dict[tuple, float] = {}
        self.cond = threading.Condition()
        recv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with recv.cond:
                    recv.got[(body["event"], body["point_code"], body["check"])] = time.monotonic()
                    recv.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, key, timeout=30.0) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.got:
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    return None
            return self.got[key]


def report(code: str, seq: int, fault: tuple[str, str] | None) -> bytes:
    now = datetime.now(timezone.utc)
    results = [Result(check="net.core.tcp", target="省医保信息平台", status="ok", message="连接成功", value=0.01,
                      unit="seconds", observed_at=now)]
    for check, target in FAULTS:
        bad = fault == (check, target)
        results.append(Result(check=check, target=target, status="fail" if bad else "ok",
                              message=f"{target}{'不合格' if bad else '正常'}", observed_at=now))
    host = Host(hostname="YB-PC", os="Windows 10", fingerprint=Fingerprint("m", "SN", []))
    return report_to_json(Report(report_id=str(uuid.uuid4()), seq=seq, agent_id=f"bench-{code}", point_code=code,
                                 agent_version="bench", collected_at=now, sent_at=now, host=host,
                                 results=results)).encode()


def post(base: str, token: str, body: bytes) -> None:
    req = urllib.request.Request(base + "/api/v1/reports", data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 202, r.status


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faults", type=int, default=40)
    ap.add_argument("--points", type=int, default=50)
    args = ap.parse_args()
    cli = str(Path(sys.executable).with_name("pointwatch-collector"))
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="pw-bench-alerts-") as tmp:
        cfg = Path(tmp) / "collector.yaml"
        cfg.write_text(json.dumps({"alerts": {"tick": "5s", "notifiers": [
            {"name": "bench", "type": "webhook", "url": receiver.url}]}}))
        base_args = [cli, "--config", str(cfg), "--data-dir", tmp]
        env = {k: v for k, v in os.environ.items() if k != "POINTWATCH_DATABASE_URL"}
        tokens = {}
        for i in range(args.points):
            code = f"620123{i:06d}"
            subprocess.run([*base_args, "points", "add", "--code", code, "--name", f"测试点{i}",
                            "--region", f"甘肃省/兰州市/榆中县/镇{i % 8}/村{i}"], check=True, env=env,
                           capture_output=True)
            tokens[code] = subprocess.run([*base_args, "tokens", "create", "--role", "agent", "--point", code],
                                          check=True, env=env, capture_output=True, text=True).stdout.strip()
        port = free_port()
        proc = subprocess.Popen([*base_args, "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            codes = sorted(tokens)
            seqs = dict.fromkeys(codes, 0)
            lock = threading.Lock()
            stop = threading.Event()

            def background():  # the rest of the county keeps reporting, healthy, while faults come
                while not stop.is_set():
                    for code in codes[len(codes) // 2:]:
                        with lock:
                            seqs[code] += 1
                            seq = seqs[code]
                        post(base, tokens[code], report(code, seq, None))
                        if stop.is_set():
                            return

            bg = threading.Thread(target=background, daemon=True)
            bg.start()
            ingest, delays, missed = [], [], 0
            for k in range(args.faults):
                code = codes[k % (len(codes) // 2)]
                fault = FAULTS[k % len(FAULTS)]
                with lock:
                    seqs[code] += 1
                    seq = seqs[code]
                body = report(code, seq, fault)
                t0 = time.monotonic()
                post(base, tokens[code], body)
                ingest.append(time.monotonic() - t0)
                got = receiver.wait(("firing", code, fault[0]))
                if got is None:
                    missed += 1
                else:
                    delays.append(got - t0)
                with lock:
                    seqs[code] += 1
                    seq = seqs[code]
                post(base, tokens[code], report(code, seq, None))  # resolves it, so the next fault pages again
                receiver.wait(("resolved", code, fault[0]), timeout=10)
                with receiver.cond:
                    receiver.got.pop(("firing", code, fault[0]), None)
                    receiver.got.pop(("resolved", code, fault[0]), None)
            stop.set()
            bg.join(30)
        finally:
            proc.terminate()
            proc.wait(20)
    med, p95 = statistics.median(delays), pct(delays, 0.95)
    ing_med = statistics.median(ingest)
    print(f"alert latency over {len(delays)} faults ({missed} missed), {args.points} points, "
          f"{args.points - args.points // 2} reporting in the background")
    print(f"  ingest round trip (baseline): median {ing_med * 1000:.1f} ms")
    print(f"  report ingest → notifier:     median {med * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    print(f"  check interval {INTERVAL_S} s: median/interval = {med / INTERVAL_S:.5f}, "
          f"p95/interval = {p95 / INTERVAL_S:.5f} (budget: <= 1)")
    print(f"  median delay / ingest round trip = {med / ing_med:.1f}x")
    return 0 if missed == 0 and p95 <= INTERVAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
