"""Enrolment: one-time codes an admin issues for a point, traded by the agent for its id and token."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from collector.store import StoreError, sha256_hex, utcnow
from collector.store import models as m
from collector.store.audit import SYSTEM, Actor, append


def create_enroll_code(store, point_code: str, valid_for: timedelta = timedelta(days=7),
                       actor: Actor | None = None) -> str:
    # Short enough to read out over the phone to the person at the village PC, long enough not to guess.
    code = "-".join(secrets.token_hex(3).upper() for _ in range(3))
    with store.write_session() as s:
        region = s.scalar(select(m.Point.region_path).where(m.Point.code == point_code))
        if region is None:
            raise StoreError("unknown_point", f"no point with code '{point_code}'")
        now = utcnow()
        s.add(m.EnrollCode(code_hash=sha256_hex(code), point_code=point_code, created_at=now,
                           expires_at=now + valid_for))
        append(s, actor or SYSTEM, "enroll_code.create", f"point:{point_code}",
               {"expires_at": (now + valid_for).isoformat()}, region)
    return code


def enroll(store, code: str, point_code: str, hostname: str, fingerprint: dict,
           source: str | None = None) -> tuple[str, str]:
    """Trade a one-time code for (agent_id, token); the fingerprint is pinned for 人机信息相符. The hostname
    and fingerprint arrive cleaned (collector/accounts/enrolling.py); ``source`` is the caller's address,
    in the audit entry."""
    now = utcnow()
    with store.write_session() as s:
        row = s.get(m.EnrollCode, sha256_hex(code.strip().upper()), with_for_update=True)
        # One code for every refusal, so the caller never learns that a code exists (or whose it is); the
        # message says which, for the audit entry (collector/accounts/enrolling.py) and nobody else.
        if row is None:
            raise StoreError("bad_enroll_code", "unknown")
        if row.used_at is not None:
            raise StoreError("bad_enroll_code", "used")
        if _aware(row.expires_at) < now:
            raise StoreError("bad_enroll_code", "expired")
        if row.point_code != point_code:
            raise StoreError("bad_enroll_code", "other_point")
        agent_id = str(uuid.uuid4())
        token = "pw_" + secrets.token_urlsafe(32)
        row.used_at, row.used_by_agent = now, agent_id
        s.add(m.Agent(id=agent_id, point_code=point_code, hostname=hostname, fingerprint=fingerprint,
                      enrolled_at=now))
        region = s.scalar(select(m.Point.region_path).where(m.Point.code == point_code)) or "/"
        s.add(m.ApiToken(token_hash=sha256_hex(token), role="agent", region_path=region,
                         point_code=point_code, agent_id=agent_id, description=f"enrolled {hostname}"[:200],
                         created_at=now))
        # The agent's own credential is issued here, so the enrolment is on the record too.
        append(s, Actor(f"agent:{agent_id}", source), "agent.enroll", f"point:{point_code}",
               {"hostname": hostname, "fingerprint": fingerprint}, region)
    return agent_id, token


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
