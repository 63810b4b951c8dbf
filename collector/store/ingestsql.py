"""The statements ingest runs per report, in each driver's own parameter style (collector/store/ingest.py)."""

from __future__ import annotations

from datetime import timezone

from collector.store.changewrite import statements


class Sql:
    """The hot-path statements in the driver's own parameter style, executed with its executemany.

    SQLAlchemy's per-row bind processing costs more than the database's own insert, so the three
    statements run per report are plain SQL; the values are what models.UtcDateTime/JSON would bind.
    """

    def __init__(self, mark: str, sqlite: bool):
        def marks(n):
            return ", ".join([mark] * n)

        self.mark, self.sqlite = mark, sqlite
        self.ts = _sqlite_ts if sqlite else _pg_ts
        self.report = ("INSERT INTO reports (report_id, point_code, agent_id, seq, collected_at, sent_at, "
                       "received_at, agent_version, host, body, prev_digest, digest, keyset_id, verdict) "
                       f"VALUES ({marks(14)}) RETURNING id")
        self.result = ('INSERT INTO results (report_pk, point_code, "check", target, status, value, unit, '
                       f"message, details, observed_at, received_at) VALUES ({marks(11)})")
        self.state_short = (f"UPDATE point_state SET last_digest = {mark}, reports_total = {mark}, "
                            f"last_received_at = {mark} WHERE point_code = {mark}")
        # fingerprint_mismatch keeps its value when no enrolment is pinned (COALESCE of a NULL parameter).
        self.state_full = (f"UPDATE point_state SET last_digest = {mark}, reports_total = {mark}, "
                           f"last_received_at = {mark}, last_collected_at = {mark}, last_seq = {mark}, "
                           f"agent_id = {mark}, agent_version = {mark}, hostname = {mark}, os = {mark}, "
                           f"clock_skew_s = {mark}, seq_gaps = {mark}, "
                           f"fingerprint_mismatch = COALESCE({mark}, fingerprint_mismatch) "
                           f"WHERE point_code = {mark}")
        self.summary = (f"UPDATE point_state SET n_ok = {mark}, n_warn = {mark}, n_fail = {mark}, "
                        f"n_error = {mark}, silent_after = {mark} WHERE point_code = {mark}")
        self.latest = (
            'INSERT INTO latest_results (point_code, "check", target, status, value, unit, message, details, '
            f"observed_at, received_at, since, report_id) VALUES ({marks(12)}) "
            'ON CONFLICT (point_code, "check", target) DO UPDATE SET status = excluded.status, '
            "value = excluded.value, unit = excluded.unit, message = excluded.message, "
            "details = excluded.details, observed_at = excluded.observed_at, "
            "received_at = excluded.received_at, report_id = excluded.report_id, "
            "since = CASE WHEN latest_results.status = excluded.status THEN latest_results.since "
            "ELSE excluded.since END")
        # A backlog report's row becomes "now" only where it was observed after what "now" holds.
        self.latest_backlog = self.latest + " WHERE latest_results.observed_at <= excluded.observed_at"
        for name, text in statements(mark).items():
            setattr(self, name, text)


def memo(fn):
    cache: dict = {}

    def get(ts):
        try:
            return cache[ts]
        except KeyError:
            cache[ts] = value = fn(ts)
            return value

    return get


def _sqlite_ts(ts):
    # The text models.UtcDateTime stores on SQLite: naive UTC, microseconds, sorts as it compares.
    return None if ts is None else ts.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _pg_ts(ts):
    return None if ts is None else ts.astimezone(timezone.utc)


SQLITE = Sql("?", True)
PG = Sql("%s", False)
