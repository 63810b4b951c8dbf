"""Running the check families and wrapping their results into wire reports."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from agent import __version__
from agent.checks import Probe, registry, run_probes
from agent.wire import Host, Report, Result, utcnow


def probes_for(config, platform, jobs=None) -> list[Probe]:
    jobs = jobs or tuple(registry.JOBS)
    out: list[Probe] = []
    for job in jobs:
        for family in registry.JOBS[job]:
            out.extend(family.probes(config, platform))
    return out


def run_checks(config, platform, jobs=None) -> list[Result]:
    return run_probes(probes_for(config, platform, jobs))


def host_facts(platform) -> Host:
    return Host(
        hostname=platform.hostname(),
        os=platform.os_description(),
        boot_time=datetime.fromtimestamp(platform.boot_time(), tz=timezone.utc),
        fingerprint=platform.fingerprint(),
    )


def build_report(config, host: Host, results: list[Result], seq: int, agent_id: str) -> Report:
    now = utcnow()
    return Report(
        report_id=str(uuid.uuid4()), seq=seq, agent_id=agent_id, point_code=config.point.code,
        agent_version=__version__, collected_at=now, sent_at=now, host=host, results=results,
        policy_digest=getattr(config, "policy_digest", None),
    )
