"""Store side of central policy: versioned documents per region node and per point, and the digests issued.

A change is one transaction: the new version, its audit entry (who, when, the diff) and the digests it
issues to the points beneath commit together, or, when the caller's ``plan`` refuses it, nothing does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text

from collector.registry.regions import ancestors, normalize_path
from collector.store import models as m
from collector.store import utcnow
from collector.store.audit import Actor, append
from collector.store.regionscope import scoped, within

REGION, POINT = "region", "point"
POLICY_LOCK = 0x706F6C69  # "poli": advisory lock serialising policy changes and issues across collectors


def _serialise(session) -> None:
    """On PostgreSQL, one policy writer at a time across collectors (SQLite's write_session already is): two
    changes of one document would otherwise both read the same version, two issues the same current digest.
    Taken before the audit chain's own lock, always in that order."""
    if session.bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": POLICY_LOCK})


@dataclass(frozen=True)
class PointPolicyInputs:
    code: str
    region_path: str
    devices: list


class View:
    """What a plan reads inside the change's transaction: documents (with the one being set in place of its
    stored version) and the points beneath a node."""

    def __init__(self, session, replace: tuple[str, str, dict] | None = None):
        self.session, self.replace = session, replace
        self._docs: dict[tuple[str, str], dict] | None = None
        self._one: dict[tuple[str, str], dict | None] = {}

    def _body(self, scope: str, key: str) -> dict | None:
        if self.replace and self.replace[:2] == (scope, key):
            return self.replace[2]
        if self._docs is None:
            if (scope, key) not in self._one:
                row = latest_document(self.session, scope, key)
                self._one[(scope, key)] = row.body if row is not None else None
            return self._one[(scope, key)]
        return self._docs.get((scope, key))

    def read_all(self) -> None:
        """Read every document in force at once (a change may touch a province's points): one query."""
        if self._docs is None:
            newest = (select(m.PolicyDocument.scope, m.PolicyDocument.key,
                             func.max(m.PolicyDocument.version).label("v"))
                      .group_by(m.PolicyDocument.scope, m.PolicyDocument.key).subquery())
            rows = self.session.execute(select(m.PolicyDocument.scope, m.PolicyDocument.key, m.PolicyDocument.body)
                                        .join(newest, (newest.c.scope == m.PolicyDocument.scope)
                                              & (newest.c.key == m.PolicyDocument.key)
                                              & (newest.c.v == m.PolicyDocument.version)))
            self._docs = {(sc, k): b for sc, k, b in rows}

    def layers(self, region_path: str, point_code: str | None) -> list[tuple[str, dict]]:
        """(level, body) of every document that applies, root first: '/', then each ancestor, then the point."""
        out = []
        for path in ["/", *ancestors(region_path)]:
            body = self._body(REGION, path)
            if body is not None:
                out.append((path, body))
        if point_code is not None:
            body = self._body(POINT, point_code)
            if body is not None:
                out.append((f"point:{point_code}", body))
        return out

    def current_issue(self, code: str) -> Issued | None:
        r = self.session.scalar(select(m.PolicyIssue).where(m.PolicyIssue.point_code == code,
                                                            m.PolicyIssue.superseded_at.is_(None)))
        return None if r is None else Issued(r.digest, r.policy, r.issued_at, r.superseded_at, r.fetched_at)

    def points(self, region_path: str, codes: list[str] | None = None) -> list[PointPolicyInputs]:
        if codes is None or len(codes) > 20:
            self.read_all()
        stmt = scoped(select(m.Point.code, m.Point.region_path, m.Point.devices), m.Point.region_path, region_path)
        if codes is not None:
            stmt = select(m.Point.code, m.Point.region_path, m.Point.devices).where(m.Point.code.in_(codes))
        return [PointPolicyInputs(c, r, d or []) for c, r, d in self.session.execute(stmt.order_by(m.Point.code))]


    def placements(self, region_path: str) -> tuple[dict[str, int], list[PointPolicyInputs]]:
        """The points within ``region_path`` for a reader of settings that registered devices do not touch
        (the rollout's ``agent.*``), read by region: {region path: how many points it holds} of the points
        without a document of their own, which share their region's documents, and the points with one
        (devices unread: empty)."""
        self.read_all()
        own = select(m.PolicyDocument.key).where(m.PolicyDocument.scope == POINT)
        counted = scoped(select(m.Point.region_path, func.count()).where(m.Point.code.not_in(own)),
                         m.Point.region_path, region_path).group_by(m.Point.region_path)
        alone = scoped(select(m.Point.code, m.Point.region_path).where(m.Point.code.in_(own)),
                       m.Point.region_path, region_path).order_by(m.Point.code)
        return ({r: n for r, n in self.session.execute(counted)},
                [PointPolicyInputs(c, r, []) for c, r in self.session.execute(alone)])


def latest_document(session, scope: str, key: str) -> m.PolicyDocument | None:
    return session.scalar(select(m.PolicyDocument).where(m.PolicyDocument.scope == scope, m.PolicyDocument.key == key)
                          .order_by(m.PolicyDocument.version.desc()).limit(1))


def put_document(store, scope: str, key: str, region_path: str, source: str, body: dict, actor: Actor,
                 plan, diff_of) -> dict:
    """Store a new version of a document. ``plan(view)`` runs in the transaction with the new body in place and
    returns {point code: (digest, policy)} to issue, or raises to refuse (then nothing is written);
    ``diff_of(before, after)`` gives the change's diff for the row and the audit entry."""
    region_path = normalize_path(region_path)
    with store.write_session() as s:
        _serialise(s)
        prev = latest_document(s, scope, key)
        before = prev.body if prev is not None else {}
        issues = plan(View(s, (scope, key, body)))
        now = utcnow()
        change = diff_of(before, body)
        version = (prev.version if prev is not None else 0) + 1
        s.add(m.PolicyDocument(scope=scope, key=key, version=version, region_path=region_path, source=source,
                               body=body, diff=change, created_at=now, created_by=actor.name[:120]))
        append(s, actor, "policy.set", f"{scope}:{key}", {"version": version, "diff": change}, region_path)
        record_issues(s, issues, now)
    return {"scope": scope, "key": key, "version": version, "diff": change, "points": len(issues)}


def record_issues(session, issues: dict, now: datetime) -> int:
    """Make each {code: (digest, policy)} the point's current issued digest from ``now``; how many changed."""
    codes, changed = sorted(issues), 0
    for i in range(0, len(codes), 500):
        chunk = codes[i:i + 500]
        by_code: dict[str, dict] = {c: {} for c in chunk}
        for r in session.scalars(select(m.PolicyIssue).where(m.PolicyIssue.point_code.in_(chunk))):
            by_code[r.point_code][r.digest] = r
        for code in chunk:
            changed += _record(session, code, *issues[code], now, by_code[code])
    session.flush()
    return changed


def _record(session, code: str, digest: str, policy: dict, now: datetime, rows: dict) -> bool:
    current = next((r for r in rows.values() if r.superseded_at is None), None)
    if current is not None and current.digest == digest:
        return False
    if current is not None:
        current.superseded_at = now
    again = rows.get(digest)
    if again is not None:  # an earlier policy in force again: issued anew from now
        again.issued_at, again.superseded_at, again.policy = now, None, policy
    else:
        session.add(m.PolicyIssue(point_code=code, digest=digest, policy=policy, issued_at=now))
    return True


def issue(store, plan) -> int:
    """Record the digests ``plan(view)`` returns ({code: (digest, policy)}) where they changed; how many did."""
    with store.write_session() as s:
        _serialise(s)
        return record_issues(s, plan(View(s)), utcnow())


def read(store, fn):
    """``fn(view)`` in a read transaction."""
    with store.session() as s:
        return fn(View(s))


@dataclass(frozen=True)
class Issued:
    digest: str
    policy: dict
    issued_at: datetime
    superseded_at: datetime | None
    fetched_at: datetime | None


def issued(store, codes: list[str]) -> dict[str, list[Issued]]:
    """Every digest issued to these points, newest issue first."""
    if not codes:
        return {}
    with store.engine.connect() as conn:
        return issued_on(conn, codes)


_ISSUES = m.PolicyIssue.__table__


def issued_on(conn, codes: list[str]) -> dict[str, list[Issued]]:
    """``issued`` in a connection the caller holds (ingest reads it beside the enrolment pins: a Core
    statement, since ingest pays this read once per request)."""
    out: dict[str, list[Issued]] = {c: [] for c in codes}
    if not codes:
        return out
    rows = conn.execute(select(_ISSUES.c.point_code, _ISSUES.c.digest, _ISSUES.c.issued_at,
                               _ISSUES.c.superseded_at, _ISSUES.c.fetched_at)
                        .where(_ISSUES.c.point_code.in_(codes)).order_by(_ISSUES.c.issued_at.desc()))
    for code, d, at, until, fetched in rows:
        out[code].append(Issued(d, {}, at, until, fetched))
    return out


def current_issue(store, code: str) -> Issued | None:
    with store.session() as s:
        return View(s).current_issue(code)


def mark_fetched(store, code: str, digest: str, at: datetime) -> None:
    with store.write_session() as s:
        row = s.scalar(select(m.PolicyIssue).where(m.PolicyIssue.point_code == code, m.PolicyIssue.digest == digest))
        if row is not None:
            row.fetched_at = at


def unfetched_since(store, since: datetime, scope: str = "/") -> list[str]:
    """Points with a policy whose agent has not fetched it since ``since`` (key rotation waits for them)."""
    with store.session() as s:
        stmt = (select(m.PolicyIssue.point_code).join(m.Point, m.Point.code == m.PolicyIssue.point_code)
                .where(m.PolicyIssue.superseded_at.is_(None))
                .where((m.PolicyIssue.fetched_at.is_(None)) | (m.PolicyIssue.fetched_at < since)))
        return list(s.scalars(scoped(stmt, m.Point.region_path, scope).order_by(m.PolicyIssue.point_code)))


def history(store, scope: str = "/", limit: int = 100, key: str | None = None) -> list[dict]:
    """Versions of the documents within ``scope`` (a node's region, a point's region), newest first."""
    from agent.wire import rfc3339

    with store.session() as s:
        stmt = scoped(select(m.PolicyDocument), m.PolicyDocument.region_path, scope)
        if key is not None:
            stmt = stmt.where(m.PolicyDocument.key == key)
        rows = s.scalars(stmt.order_by(m.PolicyDocument.id.desc()).limit(limit)).all()
        return [{"scope": r.scope, "key": r.key, "version": r.version, "region": r.region_path,
                 "at": rfc3339(r.created_at), "by": r.created_by, "diff": r.diff} for r in rows]


def documents_within(store, scope: str = "/") -> list[dict]:
    """The version in force of every document within ``scope`` (evidence bundles include them)."""
    from agent.wire import rfc3339

    with store.session() as s:
        newest = (select(m.PolicyDocument.scope, m.PolicyDocument.key, func.max(m.PolicyDocument.version).label("v"))
                  .group_by(m.PolicyDocument.scope, m.PolicyDocument.key).subquery())
        stmt = (select(m.PolicyDocument).join(newest, (newest.c.scope == m.PolicyDocument.scope)
                                              & (newest.c.key == m.PolicyDocument.key)
                                              & (newest.c.v == m.PolicyDocument.version)))
        rows = s.scalars(stmt.where(within(m.PolicyDocument.region_path, scope)).order_by(m.PolicyDocument.key)).all()
        return [{"scope": r.scope, "key": r.key, "version": r.version, "region": r.region_path,
                 "at": rfc3339(r.created_at), "by": r.created_by, "source": r.source, "body": r.body} for r in rows]


def point_inputs(store, code: str) -> PointPolicyInputs | None:
    with store.session() as s:
        found = View(s).points("/", [code])
        return found[0] if found else None


def set_devices(store, code: str, devices: list[dict]) -> None:
    with store.write_session() as s:
        point = s.scalar(select(m.Point).where(m.Point.code == code))
        if point is not None:
            point.devices = devices


def document(store, scope: str, key: str) -> dict | None:
    """The version in force of one document."""
    from agent.wire import rfc3339

    with store.session() as s:
        r = latest_document(s, scope, key)
        return None if r is None else {"scope": r.scope, "key": r.key, "version": r.version, "region": r.region_path,
                                       "at": rfc3339(r.created_at), "by": r.created_by, "source": r.source,
                                       "body": r.body}


def issued_in(store, code: str, start: datetime, end: datetime) -> list[dict]:
    """The digests issued to a point that were in force at some moment of [start, end), oldest first."""
    with store.session() as s:
        rows = s.scalars(select(m.PolicyIssue).where(
            m.PolicyIssue.point_code == code, m.PolicyIssue.issued_at < end,
            (m.PolicyIssue.superseded_at.is_(None)) | (m.PolicyIssue.superseded_at > start))
            .order_by(m.PolicyIssue.issued_at)).all()
        return [{"digest": r.digest, "policy": r.policy, "issued_at": r.issued_at, "superseded_at": r.superseded_at}
                for r in rows]


def versions_applying(store, code: str, region_path: str, until: datetime) -> list[dict]:
    """Every version, made before ``until``, of the documents that apply to a point: its region's nodes from
    the root down, then its own."""
    from agent.wire import rfc3339

    keys = [(REGION, p) for p in ["/", *ancestors(region_path)]] + [(POINT, code)]
    out = []
    with store.session() as s:
        for scope, key in keys:
            rows = s.scalars(select(m.PolicyDocument).where(
                m.PolicyDocument.scope == scope, m.PolicyDocument.key == key, m.PolicyDocument.created_at < until)
                .order_by(m.PolicyDocument.version)).all()
            out += [{"scope": r.scope, "key": r.key, "version": r.version, "at": rfc3339(r.created_at),
                     "by": r.created_by, "source": r.source, "diff": r.diff} for r in rows]
    return out
