"""/metrics: the fleet's latest state as Prometheus series (names fixed by DESIGN.md).

Built from the latest-state tables, never from history. Label values are bounded: point codes, region
paths, profile names, check ids, configured target and device names, device kinds, standards item ids and
supply slots (``<type>/<index>`` from the Printer-MIB) — never messages, never times.

What one result means as series is agent/promtext.py, shared with the agent's own /metrics; this module
writes the collector's text the way prometheus_client.generate_latest would (sorted labels, Go-style
floats), without building a Sample and a labels dict per sample, which dominates at ~10^6 samples.

Speed: the per-point families (:data:`PER_POINT`) are rendered into ``metric_lines`` whenever a point's
latest state or score changes (:func:`point_lines`), and :meth:`FleetCollector.render` streams those stored
lines; only liveness, clock skew and alerts are computed at scrape time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from agent import promtext
from agent.vocabulary import SILENCE_INTERVALS_DEFAULT
from collector.metrics import selfmetrics
from collector.store import alerts as alerts_repo
from collector.store import metriclines
from collector.store import releases as releases_repo


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    labels: tuple[str, ...]  # sorted, as prometheus-client writes them


# Labels are listed in sorted order, because that is the order prometheus-client's text writer uses.
POINT_UP = Family("pointwatch_point_up",
                  "1 while the point's agent reports in time (3 report intervals), else 0.",
                  ("point", "profile", "region"))
LAST_REPORT = Family("pointwatch_agent_last_report_timestamp_seconds",
                     "Collector receive time of the point's latest report (Unix seconds).", ("point", "region"))
CLOCK_SKEW = Family("pointwatch_agent_clock_skew_seconds",
                    "Agent clock minus collector clock at the latest report (sent_at - received_at).",
                    ("point", "region"))
CHECK_STATUS = Family(promtext.CHECK_STATUS, "Latest check status: 0 ok, 1 warn, 2 fail, 3 error.",
                      ("check", "point", "region", "target"))
CORE_RTT = Family(promtext.CORE_RTT, "Average round-trip time to a core-network target.",
                  ("point", "region", "target"))
CORE_LOSS = Family(promtext.CORE_LOSS, "Share of echoes to a core-network target that were lost.",
                   ("point", "region", "target"))
DEVICE_UP = Family(promtext.DEVICE_UP,
                   "1 when a configured device is present and working, 0 when not (absent while its check errors).",
                   ("device", "kind", "point", "region"))
SUPPLY = Family(promtext.SUPPLY,
                "Printer supply left as a share of capacity (space left for waste receptacles); "
                "target is <Printer-MIB supply type>/<index>.",
                ("device", "kind", "point", "region", "target"))
SCORE = Family("pointwatch_compliance_score", "Points earned now on the point's standards profile.",
               ("point", "profile", "region"))
ITEM_OK = Family("pointwatch_compliance_item_ok", "1 when an automatic standards item is met now, else 0.",
                 ("item", "point", "profile", "region"))
ALERTS = Family("pointwatch_alerts_firing", "Alerts of the collector firing now, by point and watched check.",
                ("check", "point", "region"))
AGENT_VERSION = Family("pointwatch_agent_version_points",
                       "Points whose latest report came from an agent of this version (the rollout of releases).",
                       ("version",))
FAMILIES = (POINT_UP, LAST_REPORT, CLOCK_SKEW, CHECK_STATUS, CORE_RTT, CORE_LOSS, DEVICE_UP, SUPPLY, SCORE,
            ITEM_OK, ALERTS, AGENT_VERSION)
# Families of one point's latest state: rendered when that state changes (collector/scoring/scorekeeper.py) and
# stored as text, so a scrape streams them instead of rebuilding ~10^6 samples. The others are live.
PER_POINT = (CHECK_STATUS, CORE_RTT, CORE_LOSS, DEVICE_UP, SUPPLY, SCORE, ITEM_OK)

_ITEM_ID = re.compile(r'^[^\s"\\]{1,64}$')  # profile item ids (office.printer): short, no spaces or quotes


def point_samples(code: str, region: str, profile: str, rows, score) -> dict[Family, list]:
    """One point's per-point samples. ``rows``: (check, target, status, value, loss_ratio, supplies) in
    (check, target) order; ``score``: (earned, [(item_id, ok)]) or None when the point has no score yet."""
    out: dict[Family, list] = {fam: [] for fam in PER_POINT}
    by_name = {fam.name: out[fam] for fam in PER_POINT}
    for check, target, st, value, loss_ratio, supplies, *_ in rows:
        pairs = promtext.supplies_of({"supplies": supplies}) if supplies else ()
        for name, labels, sample in promtext.result_samples(code, region, check, target, st, value, loss_ratio, pairs):
            by_name[name].append((labels, float(sample)))
    if score is not None:
        earned, items = score
        out[SCORE].append(((code, profile, region), float(earned)))
        for item, ok in items:
            if ok is not None and _ITEM_ID.match(str(item)):
                out[ITEM_OK].append(((str(item), code, profile, region), 1.0 if ok else 0.0))
    return out


class TextWriter:
    """The exposition text of samples, as prometheus_client.generate_latest writes it."""

    def __init__(self):
        self._esc: dict[str, str] = {}
        self._num: dict[float, str] = {}

    @staticmethod
    def header(fam: Family) -> str:
        return f"# HELP {fam.name} {fam.help}\n# TYPE {fam.name} gauge\n"

    def lines(self, fam: Family, samples) -> str:
        head = fam.name + "{" + ",".join(f'{k}="%s"' for k in fam.labels) + "} %s\n"
        out = []
        for labels, value in samples:
            num = self._num.get(value)
            if num is None:
                num = floatToGoString(value)
                if len(self._num) < 4096:
                    self._num[value] = num
            out.append(head % (*map(self._escape, labels), num))
        return "".join(out)

    def _escape(self, v: str) -> str:
        e = self._esc.get(v)
        if e is None:
            e = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
            if len(self._esc) < 100000:
                self._esc[v] = e
        return e


def point_lines(code: str, region: str, profile: str, rows, score, writer: TextWriter | None = None) -> dict[str, str]:
    """family name -> the point's exposition lines, for the families where it has samples."""
    writer = writer or TextWriter()
    return {fam.name: writer.lines(fam, samples)
            for fam, samples in point_samples(code, region, profile, rows, score).items() if samples}


class FleetCollector:
    """The scrape of one region: live families computed, per-point families streamed from metric_lines."""

    def __init__(self, store, scope: str = "/", silence_intervals: int = SILENCE_INTERVALS_DEFAULT):
        self.store, self.scope, self.silence_intervals = store, scope, silence_intervals

    def _live(self, points) -> dict[Family, list]:
        up, last, skew, alerts = [], [], [], []
        region_of = {}
        for code, region, profile, is_up, last_ts, skew_s, _mismatch, _reported in points:
            region_of[code] = region
            up.append(((code, profile, region), 1.0 if is_up else 0.0))
            if last_ts is not None:
                last.append(((code, region), last_ts))
            if skew_s is not None:
                skew.append(((code, region), float(skew_s)))
        for code, check, firing in sorted(alerts_repo.metrics_alerts(self.store, self.scope)):
            region = region_of.get(code)
            if region is not None:
                alerts.append(((check, code, region), float(firing)))
        versions = [((version,), float(n)) for version, n in releases_repo.version_counts(self.store, self.scope)]
        return {POINT_UP: up, LAST_REPORT: last, CLOCK_SKEW: skew, ALERTS: alerts, AGENT_VERSION: versions}

    def render(self) -> bytes:
        with selfmetrics.DB_SECONDS.labels("metrics_points").time():
            points = metriclines.metrics_points(self.store, self.scope, silence_intervals=self.silence_intervals)
        live = self._live(points)
        writer = TextWriter()
        out: list[str] = []
        for fam in FAMILIES:
            out.append(writer.header(fam))
            if fam in live:
                out.append(writer.lines(fam, live[fam]))
            else:
                out.extend(metriclines.stream_metric_lines(self.store, fam.name, self.scope))
        return "".join(out).encode("utf-8")
