"""Tables of the collector store (SQLAlchemy 2).

History (`reports`, `results`) is kept apart from the latest state (`latest_results`, `point_state`) so
dashboards and /metrics never scan history. Reports carry a per-point hash chain (`prev_digest`,
`digest`) so that an edited row is detectable in evidence.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class UtcDateTime(TypeDecorator):
    """Timestamps stored in UTC and read back timezone-aware on every backend.

    SQLite keeps wall-clock text without an offset, so a report stamped +08:00 must be converted before it
    is stored, or it would sort eight hours wrong against everything else.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# BIGINT primary keys on PostgreSQL, INTEGER (rowid alias, autoincrement) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Region(Base):
    __tablename__ = "regions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(400), unique=True)  # 甘肃省/兰州市/城关区
    name: Mapped[str] = mapped_column(String(100))
    parent_path: Mapped[str | None] = mapped_column(String(400), index=True)
    level: Mapped[int] = mapped_column(Integer)  # 1 province … 5 village


class Point(Base):
    __tablename__ = "points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    region_path: Mapped[str] = mapped_column(String(400), index=True)
    profile: Mapped[str] = mapped_column(String(60), default="national-basic")
    address: Mapped[str | None] = mapped_column(String(400))
    expected_devices: Mapped[list | None] = mapped_column(JSON)
    # The point's registered devices as the agent config lists them ({kind, name, icmp|snmp|usb|…}); the
    # effective policy adds them after the region and point documents (collector/policy/).
    devices: Mapped[list | None] = mapped_column(JSON)
    report_interval_s: Mapped[int] = mapped_column(Integer, default=60)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    point_code: Mapped[str] = mapped_column(String(40), index=True)
    hostname: Mapped[str | None] = mapped_column(String(255))
    fingerprint: Mapped[dict | None] = mapped_column(JSON)  # pinned at enrolment (人机信息相符)
    enrolled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of a 256-bit random token
    role: Mapped[str] = mapped_column(String(20))  # agent, viewer, reviewer, admin
    region_path: Mapped[str] = mapped_column(String(400), default="/")
    point_code: Mapped[str | None] = mapped_column(String(40))  # agents: the one point they report for
    agent_id: Mapped[str | None] = mapped_column(String(36))
    description: Mapped[str | None] = mapped_column(String(200))
    # The person the token acts for (操作、管理、监督 split: one person is never admin and reviewer of
    # overlapping regions); None for service tokens such as Grafana's.
    person: Mapped[str | None] = mapped_column(String(120), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class User(Base):
    """A person's web login. One username has exactly one role and one region node."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    person: Mapped[str] = mapped_column(String(120), index=True)  # defaults to the username
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, encoded with its parameters
    role: Mapped[str] = mapped_column(String(20))
    region_path: Mapped[str] = mapped_column(String(400), default="/")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    __tablename__ = "web_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie value
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    source: Mapped[str | None] = mapped_column(String(120))


class EnrollCode(Base):
    __tablename__ = "enroll_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    point_code: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    used_by_agent: Mapped[str | None] = mapped_column(String(36))


class Report(Base):
    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(String(36), unique=True)
    point_code: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger)
    collected_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    agent_version: Mapped[str] = mapped_column(String(40))
    host: Mapped[dict] = mapped_column(JSON)
    body: Mapped[str] = mapped_column(Text)  # canonical JSON of the report as accepted; what the digest covers
    prev_digest: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    # Which (check, target)s the report carried (historymodels.Keyset; NULL: stored before migration 0011,
    # when every result was a results row) and the status of its agent.policy verdict (NULL: none).
    keyset_id: Mapped[int | None] = mapped_column(BigInteger)
    verdict: Mapped[str | None] = mapped_column(String(8))
    __table_args__ = (Index("ix_reports_point_received", "point_code", "received_at"),
                      Index("ix_reports_received", "received_at"),  # pruning and roll-ups by receive time
                      Index("ix_reports_point_id", "point_code", "id"))  # a point's reports since an alert watermark


class ResultFields:
    """What a stored result says, the same in history (results) and in the latest state (latest_results)."""

    status: Mapped[str] = mapped_column(String(8))
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON)
    observed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Result(ResultFields, Base):
    __tablename__ = "results"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    report_pk: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    point_code: Mapped[str] = mapped_column(String(40))
    check: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    # Charts bucket by observed_at, so a backlog delivered after an outage fills its own gap.
    __table_args__ = (Index("ix_results_point_check_received", "point_code", "check", "received_at"),
                      Index("ix_results_point_check_observed", "point_code", "check", "observed_at"),
                      Index("ix_results_report", "report_pk"))


class JobState(Base):
    """Watermarks and last-run times of background jobs, shared by every collector on the database."""

    __tablename__ = "job_state"
    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    watermark: Mapped[datetime | None] = mapped_column(UtcDateTime())
    runs: Mapped[int] = mapped_column(Integer, default=0)
    last_runner: Mapped[str | None] = mapped_column(String(120))
    details: Mapped[dict | None] = mapped_column(JSON)


class LatestResult(ResultFields, Base):
    __tablename__ = "latest_results"
    point_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    check: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    since: Mapped[datetime] = mapped_column(UtcDateTime())  # when this status began
    report_id: Mapped[str] = mapped_column(String(36))
    __table_args__ = (Index("ix_latest_check_status", "check", "status"),
                      Index("ix_latest_status_point", "status", "point_code"))


class PointState(Base):
    __tablename__ = "point_state"
    point_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_received_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_collected_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_digest: Mapped[str] = mapped_column(String(64), default="")
    agent_id: Mapped[str | None] = mapped_column(String(36))
    agent_version: Mapped[str | None] = mapped_column(String(40))
    hostname: Mapped[str | None] = mapped_column(String(255))
    os: Mapped[str | None] = mapped_column(String(255))
    clock_skew_s: Mapped[float | None] = mapped_column(Float)
    seq_gaps: Mapped[int] = mapped_column(Integer, default=0)
    fingerprint_mismatch: Mapped[bool] = mapped_column(Boolean, default=False)
    reports_total: Mapped[int] = mapped_column(BigInteger, default=0)
    # Latest results by status, the silence deadline: kept at ingest so overview and /metrics sort by SQL.
    n_ok: Mapped[int] = mapped_column(Integer, default=0)
    n_warn: Mapped[int] = mapped_column(Integer, default=0)
    n_fail: Mapped[int] = mapped_column(Integer, default=0)
    n_error: Mapped[int] = mapped_column(Integer, default=0)
    silent_after: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    # The last report (reports.id) whose results the alert engine has judged; None: none yet. Per point the
    # ids grow in commit order (ingest and evaluation hold this row's lock), unlike receive times.
    alerts_evaluated_report: Mapped[int | None] = mapped_column(BigInteger)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str | None] = mapped_column(String(400))
    details: Mapped[dict | None] = mapped_column(JSON)
    source: Mapped[str | None] = mapped_column(String(120))
    region_path: Mapped[str] = mapped_column(String(400), default="/")  # region the action concerns
    prev_digest: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    __table_args__ = (UniqueConstraint("prev_digest", name="uq_audit_chain"),)


class PointScore(Base):
    """Each point's "now" score on its profile, kept current after ingest (and when a point falls silent),
    so /metrics and rankings read it instead of scoring every point on every request."""

    __tablename__ = "point_scores"
    point_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    profile: Mapped[str] = mapped_column(String(60))
    earned: Mapped[float] = mapped_column(Float)
    automatic_points: Mapped[float] = mapped_column(Float)
    items: Mapped[dict] = mapped_column(JSON)  # automatic item id -> met (bool)
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MetricLines(Base):
    """A point's pre-rendered /metrics lines for one per-point family (see collector/metrics/render.py)."""

    __tablename__ = "metric_lines"
    family: Mapped[str] = mapped_column(String(80), primary_key=True)
    point_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    region_path: Mapped[str] = mapped_column(String(400))
    body: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_metric_lines_point", "point_code"),)


# -- alerts -----------------------------------------------------------------------------------------------
# One row per alert episode. ``open_key`` holds the fingerprint while the episode is open (pending or
# firing) and NULL once it is resolved: the unique constraint on it is what keeps one open alert per
# rule+point+target even with several collectors on one database (NULLs never collide), while resolved
# episodes stay as history for evidence.
class Alert(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    open_key: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(40))
    point_code: Mapped[str] = mapped_column(String(40))
    region_path: Mapped[str] = mapped_column(String(400))
    check: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(10))  # pending, firing, resolved
    summary: Mapped[str] = mapped_column(Text)  # Chinese: what is wrong
    value: Mapped[float | None]
    pending_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # fault first seen
    fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Receive time of the last report counted as an observation: a re-evaluation without a newer report
    # (timer, duplicate batch, second collector) never moves the streaks.
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fail_streak: Mapped[int] = mapped_column(Integer, default=0)
    ok_streak: Mapped[int] = mapped_column(Integer, default=0)
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # firing message queued
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (UniqueConstraint("open_key", name="uq_alerts_open_key"),
                      Index("ix_alerts_point_state", "point_code", "state"),
                      Index("ix_alerts_state_region", "state", "region_path"))


class Silence(Base):
    __tablename__ = "alert_silences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Matchers: an empty one matches anything; region matches the point's region and beneath it.
    region_path: Mapped[str] = mapped_column(String(400), default="/")
    point_code: Mapped[str | None] = mapped_column(String(40))
    rule: Mapped[str | None] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    expired_by: Mapped[str | None] = mapped_column(String(120))


class Notification(Base):
    """The outbox of messages to notifiers: written in the transaction that changes the alert, so a
    restart loses nothing; claimed with FOR UPDATE SKIP LOCKED so each is sent by one collector."""

    __tablename__ = "alert_notifications"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigId, index=True)
    notifier: Mapped[str] = mapped_column(String(80))
    event: Mapped[str] = mapped_column(String(10))  # firing, resolved
    payload: Mapped[dict] = mapped_column(JSON)  # the message as composed when queued
    status: Mapped[str] = mapped_column(String(10))  # queued, sending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("ix_alert_notifications_due", "status", "next_attempt_at"),)


# -- central policy (collector/policy/) ------------------------------------------------------------------------
class PolicyDocument(Base):
    """One version of the policy document of a region node (``scope`` "region", ``key`` its path) or of a point
    (``scope`` "point", ``key`` its code). Rows are only added: the newest version is the one in force."""

    __tablename__ = "policy_documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(10))  # region | point
    key: Mapped[str] = mapped_column(String(400))
    version: Mapped[int] = mapped_column(Integer)
    region_path: Mapped[str] = mapped_column(String(400), index=True)  # the node, or the point's region
    source: Mapped[str] = mapped_column(Text)  # the document as given (YAML), what `policy show` quotes
    body: Mapped[dict] = mapped_column(JSON)  # the parsed mapping
    diff: Mapped[list] = mapped_column(JSON)  # [{path, before, after}] against the previous version
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(120))
    __table_args__ = (UniqueConstraint("scope", "key", "version", name="uq_policy_documents_version"),
                      Index("ix_policy_documents_key", "scope", "key"))


class PolicyIssue(Base):
    """A digest of a point's effective policy, from the moment the collector issued it; ``superseded_at`` is
    set when another digest replaced it (the grace period of ``agent.policy`` counts from then)."""

    __tablename__ = "policy_issues"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    point_code: Mapped[str] = mapped_column(String(40))
    digest: Mapped[str] = mapped_column(String(80))  # "sha256:<hex>"
    policy: Mapped[dict] = mapped_column(JSON)  # the effective policy of that digest, as signed
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    superseded_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    fetched_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # the agent's last fetch of it
    __table_args__ = (UniqueConstraint("point_code", "digest", name="uq_policy_issues_point_digest"),
                      Index("ix_policy_issues_point", "point_code", "superseded_at"))
