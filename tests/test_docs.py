"""The documentation holds: the configuration reference is what the validators generate, the example collector
config loads, the README stays short with its two set-up commands, and every relative link resolves."""

from __future__ import annotations

import re
import subprocess
import sys

from collector.alerts.config import parse as parse_alerts
from collector.settings import Settings
from tests.conftest import REPO

DOCS = REPO / "docs"


def test_configuration_reference_is_generated_from_the_validators():
    run = subprocess.run([sys.executable, str(DOCS / "en" / "gen_config_reference.py"), "--check"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr  # stale: rerun the generator and commit its output


def test_the_reference_names_what_the_code_defines():
    from collector.alerts.config import DEFAULT_RULES

    text = (DOCS / "en" / "configuration.md").read_text(encoding="utf-8")
    assert all(f"`{rule}`" in text for rule in DEFAULT_RULES)
    for key in ("`collector.ca_bundle`", "`collector.insecure_skip_verify`", "`fallback.devices[].snmp.priv_protocol`",
                "`collector.policy_refresh`",
                "`ingest.max_in_flight`", "`retention.raw_days`", "`pointwatch-collector users create`"):
        assert key in text, key


def test_example_collector_config_loads():
    settings = Settings.load(str(REPO / "configs" / "collector.example.yaml"), None)
    alerts = parse_alerts(settings.extra["alerts"])
    assert settings.public_url == "https://10.10.1.5:8443" and len(alerts.notifiers) == 6


def test_readme_is_short_and_keeps_the_two_set_up_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 150
    assert "make demo" in readme and "make test" in readme
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]  # the only set-up commands


def test_every_relative_link_resolves():
    pages = [REPO / "README.md", REPO / "benchmarks" / "README.md", REPO / "tests" / "README.md", *DOCS.rglob("*.md")]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert broken == []


def test_collector_systemd_unit_verifies(tmp_path):
    import os

    from tests.conftest import require_tool

    analyze = require_tool("systemd-analyze", "systemd")
    unit = (REPO / "configs/systemd/pointwatch-collector.service").read_text(encoding="utf-8")
    fake_bin = tmp_path / "pointwatch-collector"  # verify wants ExecStart's binary to exist
    fake_bin.write_text(f"#!/bin/sh\nexec {sys.executable} -m collector.cli \"$@\"\n")
    fake_bin.chmod(0o755)
    path = tmp_path / "pointwatch-collector.service"
    path.write_text(unit.replace("/opt/pointwatch/bin/pointwatch-collector", str(fake_bin)), encoding="utf-8")
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "pointwatch-collector.service" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
    # The unit's command line is one the collector's parser takes (global options before the command).
    from collector.cli import build_parser

    argv = next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split()[1:]
    args = build_parser().parse_args(argv)
    assert args.command == "serve" and args.port == 8443 and args.tls_cert == "/etc/pointwatch/collector.pem"


def test_architecture_names_every_package():
    text = (DOCS / "en" / "architecture.md").read_text(encoding="utf-8")
    packages = [p.parent.relative_to(REPO).as_posix() for p in REPO.glob("*/*/__init__.py")
                if p.parts[-3] in ("agent", "collector")]
    packages += [p.relative_to(REPO).as_posix() for p in (REPO / "collector").iterdir() if p.name == "web"]
    missing = [p for p in packages if f"`{p}/`" not in text]
    assert packages and missing == [], missing
