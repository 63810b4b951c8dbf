"""/metrics: the fleet's latest state as Prometheus series (names fixed by DESIGN.md).

Rendered by a custom collector from the latest-state tables, never from history. Label values are
bounded: codes, region paths, check ids, configured target and device names — no free text, no times.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily

from agent.wire import STATUS_CODE


class FleetCollector:
    def __init__(self, store, scope: str = "/"):
        self.store, self.scope = store, scope

    def collect(self):
        points, rows = self.store.metrics_snapshot(self.scope)
        region_of = {p.code: p.region_path for p in points}

        up = GaugeMetricFamily("pointwatch_point_up", "1 while the point's agent reports in time, else 0.",
                               labels=["point", "region", "profile"])
        last = GaugeMetricFamily("pointwatch_agent_last_report_timestamp_seconds",
                                 "Collector receive time of the point's latest report (Unix seconds).",
                                 labels=["point", "region"])
        for p in points:
            up.add_metric([p.code, p.region_path, p.profile], 1.0 if p.up else 0.0)
            if p.last_received_at is not None:
                last.add_metric([p.code, p.region_path], p.last_received_at.timestamp())

        status = GaugeMetricFamily("pointwatch_check_status", "Latest check status: 0 ok, 1 warn, 2 fail, 3 error.",
                                   labels=["point", "region", "check", "target"])
        rtt = GaugeMetricFamily("pointwatch_core_rtt_seconds", "Average round-trip time to a core-network target.",
                                labels=["point", "region", "target"])
        loss = GaugeMetricFamily("pointwatch_core_loss_ratio", "Share of echoes to a core-network target lost.",
                                 labels=["point", "region", "target"])
        device_up = GaugeMetricFamily("pointwatch_device_up", "1 when a configured device is present and working.",
                                      labels=["point", "region", "device", "kind"])
        supply = GaugeMetricFamily("pointwatch_printer_supply_ratio", "Printer supply level as a share of capacity.",
                                   labels=["point", "region", "device", "target"])
        for code, check, target, st, value, _unit, details in rows:
            region = region_of.get(code, "")
            status.add_metric([code, region, check, target], float(STATUS_CODE.get(st, 3)))
            details = details or {}
            if check == "net.core.icmp":
                if value is not None:
                    rtt.add_metric([code, region, target], float(value))
                if isinstance(details.get("loss_ratio"), (int, float)):
                    loss.add_metric([code, region, target], float(details["loss_ratio"]))
            elif check.startswith("device."):
                device_up.add_metric([code, region, target, check.split(".", 1)[1]],
                                     1.0 if st in ("ok", "warn") else 0.0)
                for s in details.get("supplies", []) or []:
                    if isinstance(s, dict) and isinstance(s.get("ratio"), (int, float)):
                        supply.add_metric([code, region, target, str(s.get("description", ""))[:80]],
                                          float(s["ratio"]))
        yield from (up, last, status, rtt, loss, device_up, supply)
