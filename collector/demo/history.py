"""The demo county's last days, written once on the first start of `make demo`.

Without it the demo opens on an empty 24-hour chart, period scores of nothing and no alert history. So on
the first start (no marker file in the data directory and no report of a simulated point in the store) the
simulated fleet's last ``HISTORY_DAYS`` days are written before the collector starts serving:

- through the real ingest path: ``ReportPipeline.receive`` (derive → store → announce) of the app that is
  about to serve, one call per report time with all the points that reported then and ``received_at`` set
  to that time, so every point's hash chain is built in order, exactly as live ingest builds it;
- one report per point every ``HISTORY_INTERVAL_S`` (an hour: 169 report times in 7 days, about 11,400
  reports for the 68 points, some 140 MB of SQLite). A stored report of this fleet costs about 1.5 ms of
  CPU and 12 KB: every 30 minutes took 100 s on the 2-core development machine under other load, every 5
  minutes would be twelve times this and 1.6 GB, where the first start should take under a minute. The
  simulated points are registered with that report interval, because scoring cuts a period into slots of
  the point's ``report_interval_s`` and calls a point silent after ``point_silent.intervals`` of them
  without a report: registered at the live fleet's 15 s, a history of one report an hour would score as
  silent nearly all the time. The live fleet still sends every 15 s (more often than the interval only
  means several reports to a slot), so the pages keep moving; but a point is now silent only after
  ``intervals`` hours (3 by default), so the live silent point keeps to the history's hours
  (``live_scenario``): it is in a silent stretch at first look and stays so for four more hours;
- the same fault model as the live fleet (collector/demo/fleet.py, the same points, the same faults), on a
  clock of hours instead of 15-second ticks: a kiosk offline for 3 hours a day, remote-control software
  for 2 hours every third day, the internet reachable, a degrading core link, a USB disk, a point silent
  for 8 hours at a stretch, printers running low and out of toner and getting a new cartridge hours later;
- the alert engine replayed over it with its clock set to each report time (as the worker would: the
  points each report changed, then the timer), so the alert history holds the week's incidents, each
  fired and resolved at its own time. Nothing is sent for them: the notifiers are off during the replay
  (nobody should be paged for last week), and a notification already marked sent is never sent again.

The points are registered ``HISTORY_DAYS`` back (their ``created_at``): scoring counts nothing before a
point existed. A marker (``demo-history.json``) records what was written; later starts write nothing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

from collector.demo.fleet import SimPoint, _scenario, sim_report
from collector.store import models as m

HISTORY_DAYS = 7
HISTORY_INTERVAL_S = 3600
MARKER = "demo-history.json"

# Point index: (fault, period in hours, hours on, hours after the history starts that it first begins).
# The live fleet's schedule (fleet._scenario) has the same points and faults in 15-second ticks. Each fault
# lasts at least two reports: device and core-link alerts wait for a second one.
SCHEDULE = {
    3: ("kiosk_offline", 24, 3, 8),
    9: ("remote_control", 72, 2, 33),
    14: ("internet_reachable", 50, 5, 20),
    20: ("core_degraded", 12, 3, 3),
    27: ("queue_offline", 30, 4, 10),
    33: ("usb_disk", 24, 2, 9),
    41: ("silent", 60, 8, 44),  # the last stretch began 4 hours before now: silent at first look
    50: ("kiosk_offline", 40, 2, 15),
}
CARTRIDGE_DAYS = 20.0  # a cartridge lasts about this long on average: a quarter of the printers run out
REPLACED_AFTER_H = 3.0  # an empty cartridge is replaced about this many hours later


@dataclass
class Written:
    reports: int
    days: int
    interval_s: int
    start: str
    end: str
    alerts: int
    seconds: float


def marker_path(data_dir) -> Path:
    return Path(data_dir) / MARKER


def registered_from(now: datetime | None = None, days: int = HISTORY_DAYS,
                    interval_s: int = HISTORY_INTERVAL_S) -> datetime:
    """When the demo points count as registered: one interval before their first written report."""
    return _start(now, days) - timedelta(seconds=interval_s)


def _start(now: datetime | None, days: int) -> datetime:
    return (now or datetime.now(timezone.utc)) - timedelta(days=days)


def needed(store, data_dir, sims: list[SimPoint]) -> bool:
    """Whether this is the first start: no marker, and no report of a simulated point stored yet (a data
    directory from before the history existed, or a first start interrupted while writing, is left as it is
    and marked)."""
    marker = marker_path(data_dir)
    if marker.exists():
        return False
    with store.session() as s:
        stored = s.scalar(select(func.count()).select_from(m.Report).where(
            m.Report.point_code.in_([sim.code for sim in sims])))
    if stored:
        marker.write_text(json.dumps({"skipped": "the store already had reports of the demo points"}))
        return False
    return True


def first_start(app, sims: list[SimPoint], data_dir, **kw) -> Written | None:
    """On the first start, write the history through the app's pipeline and alert engine (before it serves:
    its services are not running yet); on any later start, nothing (None)."""
    if not needed(app.state.store, data_dir, sims):
        return None
    return write(app.state.reports, app.state.alerts, sims, data_dir, **kw)


def _schedule(sims: list[SimPoint], hours: float, faults=None, schedule=None) -> None:
    """Set each point's scheduled faults (or only ``faults``) as they stand ``hours`` into the history."""
    for index, (fault, period, on, first) in (schedule or SCHEDULE).items():
        if index < len(sims) and (faults is None or fault in faults):
            active = hours >= first and (hours - first) % period < on
            (sims[index].faults.add if active else sims[index].faults.discard)(fault)


def _faults_at(sims: list[SimPoint], hours: float, interval_s: int, schedule) -> None:
    """Set each point's faults as they stand ``hours`` into the history; wear the printers' toner."""
    _schedule(sims, hours, schedule=schedule)
    per_tick = interval_s / (CARTRIDGE_DAYS * 86400)
    for sim in sims:
        if sim.toner <= 0.0:
            if sim.rng.random() < interval_s / (REPLACED_AFTER_H * 3600):
                sim.toner = 1.0  # someone replaced the cartridge
            continue
        sim.toner = max(0.0, sim.toner - sim.rng.uniform(0.0, 2 * per_tick))


def write(pipeline, engine, sims: list[SimPoint], data_dir, now: datetime | None = None,
          days: int = HISTORY_DAYS, interval_s: int = HISTORY_INTERVAL_S, progress=print,
          schedule: dict | None = None) -> Written:
    """Write the fleet's last ``days`` through ``pipeline`` (the app's ``ReportPipeline``), replay ``engine``
    (the app's ``AlertEngine``) over it, and leave the marker. ``sims`` keep their state (faults, toner,
    sequence numbers) for the live fleet that carries on from here. ``schedule``: SCHEDULE unless given
    (tests run a small fleet of their own)."""
    began = time.monotonic()
    now = now or datetime.now(timezone.utc)
    start = _start(now, days)
    ticks = int((now - start).total_seconds() // interval_s) + 1
    per_day = max(1, 86400 // interval_s)
    clock, notifiers = engine.clock, engine.notifiers
    at = start
    engine.clock, engine.notifiers = (lambda: at), {}
    # The week's incidents, one log line each, would bury the progress lines: counted at the end instead.
    alert_log = logging.getLogger("pointwatch.alerts")
    level = alert_log.level
    alert_log.setLevel(logging.WARNING)
    reports, due = 0, set()
    try:
        for k in range(ticks):
            if k % per_day == 0 and k // per_day < days:
                progress(f"写入演示历史：第 {k // per_day + 1}/{days} 天…", flush=True)
            at = start + timedelta(seconds=k * interval_s)
            _faults_at(sims, k * interval_s / 3600, interval_s, schedule)
            batch = [sim_report(sim, at - timedelta(seconds=1 + sim.rng.random()))
                     for sim in sims if "silent" not in sim.faults]
            if batch:
                reports += pipeline.receive(batch, received_at=at)[0]
            # What the alert worker does after an ingest and on its timer, at the report time: every point
            # that reported is screened (in bulk; the clean ones are passed over and marked judged).
            asked = {r.point_code for r in batch} | due
            due = set(engine.worth_evaluating(sorted(asked)))
            for code in sorted(due):
                engine.evaluate_point(code)
            engine.tick()
    finally:
        engine.clock, engine.notifiers = clock, notifiers
        alert_log.setLevel(level)
    with pipeline.store.session() as s:
        alerts = s.scalar(select(func.count()).select_from(m.Alert).where(
            m.Alert.point_code.in_([sim.code for sim in sims])))
    written = Written(reports, days, interval_s, start.isoformat(), at.isoformat(), alerts or 0,
                      round(time.monotonic() - began, 1))
    marker_path(data_dir).write_text(json.dumps(asdict(written), ensure_ascii=False, indent=1))
    every = ("每小时" if interval_s == 3600 else f"每 {interval_s // 3600} 小时" if interval_s % 3600 == 0
             else f"每 {interval_s // 60} 分钟")
    progress(f"演示历史已写入：{reports} 份报告（{every}一份，{days} 天），"
             f"{written.alerts} 条告警记录，用时 {written.seconds:.0f} 秒", flush=True)
    return written


def written_start(data_dir) -> datetime | None:
    """Where the written history starts, from the marker (None: none was written here)."""
    try:
        start = json.loads(marker_path(data_dir).read_text()).get("start")
    except (OSError, ValueError):
        return None
    return datetime.fromisoformat(start) if start else None


def live_scenario(start: datetime | None):
    """The live fleet's faults: its 15-second schedule (fleet._scenario), except that the silent point keeps
    to the history's hours counted from ``start``: a silence of the 15-second schedule's two minutes is far
    under ``point_silent.intervals`` × ``HISTORY_INTERVAL_S`` and would never show."""
    def scenario(sims: list[SimPoint], tick: int) -> None:
        _scenario(sims, tick)
        if start is not None:
            _schedule(sims, (datetime.now(timezone.utc) - start).total_seconds() / 3600, faults={"silent"})
    return scenario
