"""A real collector process on a free port, for browser, Prometheus and end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

COLLECTOR = [sys.executable, "-m", "collector.cli"]


@dataclass
class LiveCollector:
    base: str
    data_dir: Path
    proc: subprocess.Popen
    env: dict

    def cli(self, *args: str, stdin: str | None = None) -> str:
        return subprocess.run([*COLLECTOR, "--data-dir", str(self.data_dir), *args], check=True,
                              capture_output=True, text=True, timeout=60, env=self.env, input=stdin).stdout.strip()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_collector(workdir: Path, extra_args: tuple[str, ...] = (), port: int | None = None) -> LiveCollector:
    """A collector serving ``workdir/data``; ``port`` given: on that port (the same collector started again)."""
    data = workdir / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    port = port or free_port()
    log = open(workdir / "collector.log", "a")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([*COLLECTOR, "--data-dir", str(data), *extra_args, "serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"collector exited: {(workdir / 'collector.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return LiveCollector(base, data, proc, env)
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("collector did not answer /healthz within 40 s")


class InProcessCollector:
    """The real app (collector.app.create_app) under uvicorn on a loopback port, in a thread of this process.

    For tests that need a real HTTP collector on the ``store`` fixture's backend (SQLite or PostgreSQL) and
    want to look into the store directly; ``start_collector`` runs a separate process instead.
    """

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = None

    def __enter__(self) -> InProcessCollector:
        import threading

        self.thread = threading.Thread(target=self.server.run, name="collector", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 40
        while not self.server.started:  # uvicorn sets it once the socket listens
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("in-process collector did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
