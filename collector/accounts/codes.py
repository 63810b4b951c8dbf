"""An admin issues a point's one-time enrolment code, with the exact command the person at the point's PC runs.

The code is shown once (only its hash is stored: collector/store/enrolment.py), valid for
``CODE_VALID_FOR``; the commands are those of the installation guide (docs/zh/部署手册.md), for the
Windows exe and for the Linux install, each naming this collector's address and the code, so nothing
has to be typed from memory.
"""

from __future__ import annotations

import shlex
from datetime import timedelta

from agent.cli import LINUX_CONFIG, WINDOWS_CONFIG
from collector.registry.regions import is_within
from collector.store import StoreError, enrolment, points
from collector.store.audit import Actor

CODE_VALID_FOR = timedelta(days=7)
LINUX_AGENT = "/opt/pointwatch-agent/bin/pointwatch-agent"
WINDOWS_AGENT = "pointwatch-agent.exe"


def agent_commands(collector_url: str, code: str) -> dict[str, str]:
    """{"windows": …, "linux": …}: ``pointwatch-agent enroll`` (agent/cli.py) as each platform runs it."""
    windows = f'{WINDOWS_AGENT} enroll --config {WINDOWS_CONFIG} --collector "{collector_url}" --code {code}'
    linux = " ".join(["sudo", LINUX_AGENT, "enroll", "--config", LINUX_CONFIG, "--collector",
                      shlex.quote(collector_url), "--code", code])
    return {"windows": windows, "linux": linux}


def issue(store, point_code: str, collector_url: str, actor: Actor, scope: str) -> dict:
    """A new code for a point of ``scope`` (audited ``enroll_code.create``); elsewhere the point does not
    exist (StoreError ``unknown_point``)."""
    region = points.point_region(store, point_code)
    if region is None or not is_within(region, scope):
        raise StoreError("unknown_point", f"没有服务点“{point_code}”")
    code = enrolment.create_enroll_code(store, point_code, CODE_VALID_FOR, actor=actor)
    return {"code": code, "point": point_code, "valid_days": CODE_VALID_FOR.days,
            "commands": agent_commands(collector_url, code)}


def collector_url(settings, request_base: str) -> str:
    """The address agents enrol with: ``public_url`` when the config sets one, else the address the admin's
    browser reached this collector at (agents on the same private network reach it there too)."""
    configured = getattr(settings, "public_url", "") or ""
    if configured and configured != type(settings).public_url:
        return configured.rstrip("/")
    return request_base.rstrip("/")
