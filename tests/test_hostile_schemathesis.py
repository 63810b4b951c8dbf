"""schemathesis against /openapi.json: every operation, as every role and anonymously — no 5xx, and every
response matches the schema the collector publishes (status bodies, content types).

In-process against the ASGI app (no sockets), on SQLite and on PostgreSQL (PostgreSQL refuses NUL in text
and range-checks integers that SQLite takes, so a 5xx can hide on one backend only). Examples are bounded
(``POINTWATCH_FUZZ_EXAMPLES``, default 25 per operation) and derandomized, so the run is the same every
time and fits in CI. Path parameters named ``code`` are drawn a third of the time from the seeded points
(one in the callers' county, one outside it) and ``from``/``to`` from valid periods, so the handlers behind
the 404s and the date parsing get exercised too.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta

import pytest

from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import points
from tests.conftest import require
from tests.helpers import ingest, report_json

COUNTY_A = "甘肃省/兰州市/城关区"
COUNTY_B = "甘肃省/兰州市/七里河区"
POINT_A, POINT_B = "620102001001", "620103009009"
YESTERDAY = (date.today() - timedelta(days=1)).isoformat()
TOMORROW = (date.today() + timedelta(days=1)).isoformat()
MAX_EXAMPLES = int(os.environ.get("POINTWATCH_FUZZ_EXAMPLES", "25"))


@pytest.fixture
def fuzz_app(store, tmp_path):
    from collector.ingest.accept import parse_reports

    points.upsert_point(store, POINT_A, "城关区某村服务点", COUNTY_A + "/某镇/某村")
    points.upsert_point(store, POINT_B, "七里河区某村服务点", COUNTY_B + "/某镇/某村")
    principals = {"anonymous": {}}
    for role in ("viewer", "admin", "reviewer"):
        principals[role] = {"Authorization": "Bearer " + users.create_token(store, role, COUNTY_A, person=f"p-{role}")}
    principals["agent"] = {"Authorization": "Bearer " + users.create_token(store, "agent", point_code=POINT_A)}
    for code, statuses in ((POINT_A, {"net.core.tcp": "fail", "net.core.icmp": "ok"}), (POINT_B, None)):
        body = json.dumps(report_json(point_code=code, statuses=statuses)).encode()
        ingest(store, parse_reports(body))
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    return app, principals


def _fuzz_operation(operation, principals: dict) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    has_period = any(p.name == "from" for p in operation.query)

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(), code=st.sampled_from([None, POINT_A, POINT_B]),
           period=st.sampled_from([None, ("2026-01-01", "2026-01-02"), (YESTERDAY, TOMORROW)]))
    def run(case, code, period):
        if code is not None and "code" in (case.path_parameters or {}):
            case.path_parameters["code"] = code
        if period is not None and has_period:
            case.query = {**(case.query or {}), "from": period[0], "to": period[1]}
        for who, headers in principals.items():
            try:
                case.call_and_validate(headers=dict(headers), checks=checks)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                raise AssertionError(f"as {who}: {exc}") from None

    run()


def test_every_operation_every_role(fuzz_app):
    try:
        import schemathesis
    except ImportError:
        require(False, "schemathesis (PyPI, in the dev extra) is not installed")
    app, principals = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            _fuzz_operation(operation, principals)
        except BaseException as exc:  # one operation's failure must not hide the others'
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {str(exc)[:3000]}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
