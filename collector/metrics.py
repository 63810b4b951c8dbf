"""/metrics: the fleet's latest state as Prometheus series (names fixed by DESIGN.md).

Built from the latest-state tables, never from history. Label values are bounded: point codes, region
paths, profile names, check ids, configured target and device names, device kinds, standards item ids and
supply slots (``<type>/<index>`` from the Printer-MIB) — never messages, never times.

:class:`FleetCollector` is a prometheus-client custom collector (``collect()`` yields metric families, so
it can sit in any registry), and also renders the same text straight from the snapshot (``render()``):
at 25,000 points that is ~10^6 samples, where building a ``Sample`` namedtuple and a labels dict per
sample dominates the scrape. Both paths share :meth:`families`; a test checks they agree byte for byte.

Scores and alerts come from other parts of the collector. The store provides them, when it can, through
two read methods; until a store has them the families are exported with no samples (never made up):

- ``store.metrics_compliance(scope)`` -> iterable of ``(point_code, profile, score, items)`` where
  ``score`` is the points earned on the profile's "now" sheet and ``items`` an iterable of
  ``(item_id, ok)`` for automatic items (``ok`` True/False; manual items are left out);
- ``store.metrics_alerts(scope)`` -> iterable of ``(point_code, check, firing)``: how many alerts of the
  point are firing, keyed by the check the alert rule watches (``point.silent`` for silence).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.utils import floatToGoString

from agent.metrics_endpoint import supplies_of  # one reading of device details for agent and collector
from agent.wire import STATUS_CODE
from collector import selfmetrics


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
CHECK_STATUS = Family("pointwatch_check_status", "Latest check status: 0 ok, 1 warn, 2 fail, 3 error.",
                      ("check", "point", "region", "target"))
CORE_RTT = Family("pointwatch_core_rtt_seconds", "Average round-trip time to a core-network target.",
                  ("point", "region", "target"))
CORE_LOSS = Family("pointwatch_core_loss_ratio", "Share of echoes to a core-network target that were lost.",
                   ("point", "region", "target"))
DEVICE_UP = Family("pointwatch_device_up",
                   "1 when a configured device is present and working, 0 when not (absent while its check errors).",
                   ("device", "kind", "point", "region"))
SUPPLY = Family("pointwatch_printer_supply_ratio",
                "Printer supply left as a share of capacity (space left for waste receptacles); "
                "target is <Printer-MIB supply type>/<index>.",
                ("device", "kind", "point", "region", "target"))
SCORE = Family("pointwatch_compliance_score", "Points earned now on the point's standards profile.",
               ("point", "profile", "region"))
ITEM_OK = Family("pointwatch_compliance_item_ok", "1 when an automatic standards item is met now, else 0.",
                 ("item", "point", "profile", "region"))
ALERTS = Family("pointwatch_alerts_firing", "Alerts of the collector firing now, by point and watched check.",
                ("check", "point", "region"))
FAMILIES = (POINT_UP, LAST_REPORT, CLOCK_SKEW, CHECK_STATUS, CORE_RTT, CORE_LOSS, DEVICE_UP, SUPPLY, SCORE,
            ITEM_OK, ALERTS)

_ITEM_ID = re.compile(r'^[^\s"\\]{1,64}$')  # profile item ids (office.printer): short, no spaces or quotes


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class FleetCollector:
    def __init__(self, store, scope: str = "/"):
        self.store, self.scope = store, scope

    def families(self) -> Iterable[tuple[Family, list[tuple[tuple[str, ...], float]]]]:
        with selfmetrics.DB_SECONDS.labels("metrics_snapshot").time():
            points, rows = self.store.metrics_snapshot(self.scope)
        region_of = {p[0]: p[1] for p in points}
        profile_of = {p[0]: p[2] for p in points}
        up, last, skew = [], [], []
        for code, region, profile, is_up, last_ts, skew_s, _mismatch, _reported in points:
            up.append(((code, profile, region), 1.0 if is_up else 0.0))
            if last_ts is not None:
                last.append(((code, region), last_ts))
            if skew_s is not None:
                skew.append(((code, region), float(skew_s)))

        status, rtt, loss, device_up, supply = [], [], [], [], []
        code_of = STATUS_CODE
        for code, check, target, st, value, loss_ratio, supplies in rows:
            region = region_of.get(code)
            if region is None:  # a result of a point outside the scope (or deleted meanwhile)
                continue
            status.append(((check, code, region, target), float(code_of.get(st, 3))))
            if check == "net.core.icmp":
                if _number(value):
                    rtt.append(((code, region, target), float(value)))
                if _number(loss_ratio):
                    loss.append(((code, region, target), float(loss_ratio)))
            elif check.startswith("device."):
                kind = check[7:]
                if st != "error":  # an error proves neither presence nor absence
                    device_up.append(((target, kind, code, region), 1.0 if st in ("ok", "warn") else 0.0))
                if supplies:
                    for slot, ratio in supplies_of({"supplies": supplies}):
                        supply.append(((target, kind, code, region, slot), ratio))

        score, item_ok = [], []
        compliance = getattr(self.store, "metrics_compliance", None)
        for code, profile, points_earned, items in (compliance(self.scope) if compliance else ()):
            region, profile = region_of.get(code), profile or profile_of.get(code, "")
            if region is None:
                continue
            score.append(((code, profile, region), float(points_earned)))
            for item, ok in items:
                if ok is not None and _ITEM_ID.match(str(item)):
                    item_ok.append(((str(item), code, profile, region), 1.0 if ok else 0.0))

        alerts = []
        alert_source = getattr(self.store, "metrics_alerts", None)
        for code, check, firing in (alert_source(self.scope) if alert_source else ()):
            region = region_of.get(code)
            if region is not None:
                alerts.append(((check, code, region), float(firing)))

        return ((POINT_UP, up), (LAST_REPORT, last), (CLOCK_SKEW, skew), (CHECK_STATUS, status),
                (CORE_RTT, rtt), (CORE_LOSS, loss), (DEVICE_UP, device_up), (SUPPLY, supply), (SCORE, score),
                (ITEM_OK, item_ok), (ALERTS, alerts))

    # -- prometheus-client collector interface -------------------------------------------------------
    def collect(self):
        for fam, samples in self.families():
            metric = GaugeMetricFamily(fam.name, fam.help, labels=list(fam.labels))
            for labels, value in samples:
                metric.add_metric(list(labels), value)
            yield metric

    def describe(self):
        return [GaugeMetricFamily(f.name, f.help, labels=list(f.labels)) for f in FAMILIES]

    # -- direct text rendering (same bytes as prometheus_client.generate_latest) ---------------------
    def render(self) -> bytes:
        out: list[str] = []
        esc_cache: dict[str, str] = {}
        num_cache: dict[float, str] = {}

        def esc(v: str) -> str:
            e = esc_cache.get(v)
            if e is None:
                e = esc_cache[v] = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
            return e

        for fam, samples in self.families():
            out.append(f"# HELP {fam.name} {fam.help}\n# TYPE {fam.name} gauge\n")
            # One format string per family: name{a="%s",b="%s"} %s
            head = fam.name + "{" + ",".join(f'{k}="%s"' for k in fam.labels) + "} %s\n"
            for labels, value in samples:
                num = num_cache.get(value)
                if num is None:
                    num = floatToGoString(value)
                    if len(num_cache) < 4096:
                        num_cache[value] = num
                out.append(head % (*map(esc, labels), num))
        return "".join(out).encode("utf-8")
