"""Agent configuration: the YAML contract of DESIGN.md, validated at load.

The top level is read here; each check family reads its own section (``parse_config`` in its module), so
a family's options live beside the code that uses them. Any problem raises :class:`ConfigError` naming the
file, the line and the field; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.confignode import ConfigError, Node, optional, parse_yaml

JOB_NAMES = ("network", "devices", "compliance", "identity")
DEFAULT_INTERVALS = {"network": 60.0, "devices": 300.0, "compliance": 300.0, "identity": 3600.0}


@dataclass
class PointConfig:
    code: str
    name: str


@dataclass
class CollectorConfig:
    url: str | None = None
    ca_bundle: str | None = None
    token_file: str | None = None
    # Turning TLS verification off is an explicit choice that the agent logs at every start.
    insecure_skip_verify: bool = False
    timeout: float = 10.0


@dataclass
class MetricsConfig:
    """The agent's own /metrics for sites that pull (off unless ``metrics.listen`` is set)."""

    listen: tuple[str, int] | None = None


@dataclass
class AgentConfig:
    path: str
    point: PointConfig
    collector: CollectorConfig
    state_dir: str
    intervals: dict[str, float]
    core_network: Any
    isolation: Any
    usage: Any
    devices: Any
    disabled_checks: set[str] = field(default_factory=set)
    log_level: str = "INFO"
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def enabled(self, check_id: str) -> bool:
        return check_id not in self.disabled_checks


TOP_KEYS = ("point", "collector", "state_dir", "intervals", "core_network", "isolation", "usage", "devices",
            "checks", "log", "metrics")


def load(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), None, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, "", f"cannot read the file: {exc}") from None
    return parse(text, str(path))


def parse(text: str, file: str = "<config>") -> AgentConfig:
    # Imported here so that `agent.config` stays importable on its own; families import lazily what is heavy.
    from agent.checks import registry

    root = parse_yaml(text, file)
    top = root.mapping(TOP_KEYS, required=("point",))
    cfg = AgentConfig(
        path=file,
        point=_point(top["point"]),
        collector=optional(top, "collector", CollectorConfig(), _collector),
        state_dir=optional(top, "state_dir", _default_state_dir(), lambda n: n.str()),
        intervals=optional(top, "intervals", dict(DEFAULT_INTERVALS), _intervals),
        core_network=None, isolation=None, usage=None, devices=None,
    )
    for section, parser in registry.SECTION_PARSERS.items():
        node = top.get(section)
        setattr(cfg, section, parser(node if node is not None and node.value is not None else None))
    if "checks" in top:
        cfg.disabled_checks = _checks(top["checks"], registry.known_check_ids(cfg))
    if "log" in top:
        log = top["log"].mapping(("level",))
        cfg.log_level = optional(log, "level", "INFO", lambda n: n.choice(("DEBUG", "INFO", "WARNING", "ERROR")))
    if "metrics" in top and top["metrics"].value is not None:
        metrics = top["metrics"].mapping(("listen",))
        cfg.metrics = MetricsConfig(listen=optional(metrics, "listen", None, Node.host_port))
    return cfg


def _point(node: Node) -> PointConfig:
    m = node.mapping(("code", "name"), required=("code",))
    code = m["code"].str(max_len=40)
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,40}", code):
        m["code"].fail(f"'{code}' is not a point code (letters, digits, '-' or '_')")
    return PointConfig(code=code, name=optional(m, "name", code, lambda n: n.str(max_len=200)))


def _collector(node: Node) -> CollectorConfig:
    m = node.mapping(("url", "ca_bundle", "token_file", "insecure_skip_verify", "timeout"))
    url = optional(m, "url", None, lambda n: n.str())
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        m["url"].fail(f"'{url}' is not an http:// or https:// URL")
    return CollectorConfig(
        url=url.rstrip("/") if url else None,
        ca_bundle=optional(m, "ca_bundle", None, lambda n: n.str()),
        token_file=optional(m, "token_file", None, lambda n: n.str()),
        insecure_skip_verify=optional(m, "insecure_skip_verify", False, Node.bool),
        timeout=optional(m, "timeout", 10.0, lambda n: n.duration(0.1, 300)),
    )


def _intervals(node: Node) -> dict[str, float]:
    m = node.mapping(JOB_NAMES)
    out = dict(DEFAULT_INTERVALS)
    for name, child in m.items():
        out[name] = child.duration(5, 86400)
    return out


def _checks(node: Node, known: set[str]) -> set[str]:
    m = node.mapping(("disabled",))
    disabled = set()
    for item in optional(m, "disabled", [], Node.items):
        check_id = item.str()
        if check_id not in known:
            item.fail(f"unknown check id '{check_id}' (known: {', '.join(sorted(known))})")
        disabled.add(check_id)
    return disabled


def _default_state_dir() -> str:
    import os
    import sys

    if sys.platform == "win32":
        return os.path.join(os.environ.get("ProgramData", r"C:\ProgramData"), "pointwatch-agent")
    return "/var/lib/pointwatch-agent"
