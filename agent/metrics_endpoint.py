"""The agent's own /metrics, for sites that pull instead of (or besides) the collector push.

Off by default; ``metrics: {listen: "127.0.0.1:9465"}`` in the agent config turns it on. Standard library
only (http.server in a daemon thread): it renders the last results of each job in the Prometheus text
format with the metric names of DESIGN.md, labelled by point, check, target, device and kind (the agent
does not know its region; a scrape config adds it). The service calls::

    endpoint = metrics_endpoint.start(cfg)            # None unless cfg.metrics.listen is set
    ...
    if endpoint: endpoint.update(job_name, results)   # after every job run, with its list[wire.Result]
    ...
    if endpoint: endpoint.stop()                      # on shutdown

What a result means as series is agent/promtext.py, shared with the collector; this module writes the text.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent import promtext
from agent.promtext import supplies_of

log = logging.getLogger("pointwatch.agent.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# (name, help, label names in sorted order): the agent knows no region, so its series have no region label.
FAMILIES = (
    (promtext.CHECK_STATUS, "Latest check status: 0 ok, 1 warn, 2 fail, 3 error.", ("check", "point", "target")),
    (promtext.CORE_RTT, "Average round-trip time to a core-network target.", ("point", "target")),
    (promtext.CORE_LOSS, "Share of echoes to a core-network target that were lost.", ("point", "target")),
    (promtext.DEVICE_UP, "1 when a configured device is present and working, 0 when not.", ("device", "kind", "point")),
    (promtext.SUPPLY, "Printer supply left as a share of capacity; target is <type>/<index>.",
     ("device", "kind", "point", "target")),
)
__all__ = ["MetricsEndpoint", "render", "start", "supplies_of"]


def _esc(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return "{" + ",".join(f'{k}="{_esc(str(v))}"' for k, v in zip(names, values, strict=True)) + "}"


def _value(v: float) -> str:
    if isinstance(v, int):  # status and presence codes
        return str(v)
    return repr(float(v)) if math.isfinite(v) else ("NaN" if v != v else ("+Inf" if v > 0 else "-Inf"))


def render(point: str, jobs: dict[str, tuple[float, list]]) -> bytes:
    """Prometheus text for the last results of each job: ``jobs`` maps job -> (finished_at, results)."""
    series: dict[str, list[str]] = {name: [] for name, _, _ in FAMILIES}
    names = {name: labels for name, _, labels in FAMILIES}
    for _job, (_finished, results) in sorted(jobs.items()):
        for r in results:
            details = r.details if isinstance(r.details, dict) else {}
            for fam, labels, value in promtext.result_samples(point, None, r.check, r.target, r.status, r.value,
                                                              details.get("loss_ratio"), supplies_of(details)):
                series[fam].append(f"{_labels(names[fam], labels)} {_value(value)}")
    out = []
    for name, help_text, _ in FAMILIES:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        out.extend(f"{name}{line}\n" for line in series[name])
    return "".join(out).encode("utf-8")


class MetricsEndpoint:
    """Holds the last results of each job and serves them on ``/metrics``."""

    def __init__(self, host: str, port: int, point: str):
        self.point = point
        self._jobs: dict[str, tuple[float, list]] = {}
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = endpoint.render()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):  # scrapes every 15 s would flood the agent log
                log.debug("metrics_request " + fmt, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-endpoint", daemon=True)

    def start(self) -> MetricsEndpoint:
        self._thread.start()
        log.info("metrics_listening address=%s:%d", *self.address)
        return self

    def update(self, job: str, results: list, finished_at: float | None = None) -> None:
        """Replace a job's last results (a list of wire.Result); cheap, safe from any thread."""
        with self._lock:
            self._jobs[job] = (time.time() if finished_at is None else finished_at, list(results))

    def render(self) -> bytes:
        with self._lock:
            jobs = dict(self._jobs)
        return render(self.point, jobs)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(cfg) -> MetricsEndpoint | None:
    """Start the endpoint when the config asks for it (``metrics.listen``), else return None."""
    listen = getattr(getattr(cfg, "metrics", None), "listen", None)
    if not listen:
        return None
    host, port = listen
    return MetricsEndpoint(host, port, cfg.point.code).start()
