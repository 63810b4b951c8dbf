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

``supplies_of`` is shared with the collector, so both sides read the device details the same way.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("pointwatch.agent.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUS_CODE = {"ok": 0, "warn": 1, "fail": 2, "error": 3}

_SUPPLY_TYPE = re.compile(r"^[A-Za-z]{1,32}$")
_SUPPLY_INDEX = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}$")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def supplies_of(details: dict) -> list[tuple[str, float]]:
    """(slot, ratio) of every measured supply in a device result's details; slot = ``<type>/<index>``.

    The device checks put the Printer-MIB supplies (``index``, ``type``, ``ratio`` …) either at the top of
    the details or in the details of the method that read them (``methods: [{method: snmp, supplies}]``).
    Supplies whose level the printer cannot state have no ratio and no sample. The slot, not the printer's
    description text, is the label: bounded and stable.
    """
    lists = [details.get("supplies")]
    methods = details.get("methods")
    if isinstance(methods, list):
        lists += [m.get("supplies") for m in methods if isinstance(m, dict)]
    out: dict[str, float] = {}
    for supplies in lists:
        for s in supplies if isinstance(supplies, list) else ():
            if not isinstance(s, dict) or not _number(s.get("ratio")):
                continue
            typ, index = str(s.get("type") or "unknown"), str(s.get("index") or "")
            if _SUPPLY_TYPE.match(typ) and _SUPPLY_INDEX.match(index):
                out.setdefault(f"{typ}/{index}", float(s["ratio"]))
    return list(out.items())


FAMILIES = (
    ("pointwatch_check_status", "Latest check status: 0 ok, 1 warn, 2 fail, 3 error."),
    ("pointwatch_core_rtt_seconds", "Average round-trip time to a core-network target."),
    ("pointwatch_core_loss_ratio", "Share of echoes to a core-network target that were lost."),
    ("pointwatch_device_up", "1 when a configured device is present and working, 0 when not."),
    ("pointwatch_printer_supply_ratio", "Printer supply left as a share of capacity; target is <type>/<index>."),
)


def _esc(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_esc(str(v))}"' for k, v in sorted(labels.items())) + "}"


def _value(v: float) -> str:
    return repr(float(v)) if math.isfinite(v) else ("NaN" if v != v else ("+Inf" if v > 0 else "-Inf"))


def render(point: str, jobs: dict[str, tuple[float, list]]) -> bytes:
    """Prometheus text for the last results of each job: ``jobs`` maps job -> (finished_at, results)."""
    series: dict[str, list[str]] = {name: [] for name, _ in FAMILIES}
    for _job, (_finished, results) in sorted(jobs.items()):
        for r in results:
            series["pointwatch_check_status"].append(
                f"{_labels(check=r.check, point=point, target=r.target)} {STATUS_CODE.get(r.status, 3)}")
            details = r.details if isinstance(r.details, dict) else {}
            if r.check == "net.core.icmp":
                if _number(r.value):
                    series["pointwatch_core_rtt_seconds"].append(
                        f"{_labels(point=point, target=r.target)} {_value(r.value)}")
                if _number(details.get("loss_ratio")):
                    series["pointwatch_core_loss_ratio"].append(
                        f"{_labels(point=point, target=r.target)} {_value(details['loss_ratio'])}")
            elif r.check.startswith("device."):
                kind = r.check[len("device."):]
                if r.status != "error":
                    series["pointwatch_device_up"].append(
                        f"{_labels(device=r.target, kind=kind, point=point)} {1 if r.status in ('ok', 'warn') else 0}")
                for slot, ratio in supplies_of(details):
                    series["pointwatch_printer_supply_ratio"].append(
                        f"{_labels(device=r.target, kind=kind, point=point, target=slot)} {_value(ratio)}")
    out = []
    for name, help_text in FAMILIES:
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
