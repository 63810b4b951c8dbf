"""Agent configuration: the YAML contract of DESIGN.md, validated at load.

The top level is read here; each check family reads its own section (``parse_config`` in its module), so
a family's options live beside the code that uses them. Any problem raises :class:`ConfigError` naming the
file, the line and the field; the CLI turns that into exit code 2.

The local file is the *bootstrap* (point, collector, CA bundle, state directory, log, metrics) plus, under
``fallback:``, the check settings for a first start before any policy was fetched (older files that give
them at the top level mean the same). Once a verified policy from the collector exists
(agent/policy.py), :func:`with_policy` builds the config the checks run with from the bootstrap and the
policy alone: no local check setting survives, so nothing on the PC can loosen the exam.

A policy may also hold ``agent:`` (:class:`UpgradePolicy`): which agent release the point runs and when it
may change. Only a signed policy may order an upgrade, so the local file may not hold it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.confignode import ConfigError, Node, from_data, optional, parse_yaml

JOB_NAMES = ("network", "devices", "compliance", "identity")
DEFAULT_INTERVALS = {"network": 60.0, "devices": 300.0, "compliance": 300.0, "identity": 3600.0}
# What decides the exam: the keys a fetched policy may hold, and (with `checks`) what a local fallback may.
# `agent` (which release runs) is a policy key the local file may not hold: only the collector may order it.
SIGNED_ONLY_KEYS = ("agent",)
POLICY_KEYS = ("intervals", "core_network", "isolation", "usage", "devices", *SIGNED_ONLY_KEYS)
CHECK_KEYS = (*(k for k in POLICY_KEYS if k not in SIGNED_ONLY_KEYS), "checks")
DEFAULT_MAX_KBPS = 64  # kilobits per second: a village's 2G/3G line keeps room for the reports
ANY_TIME = "00:00-24:00"
_WINDOW = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


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
    policy_refresh: float = 300.0  # how often the agent asks for its policy (ETag: mostly a 304)


@dataclass
class MetricsConfig:
    """The agent's own /metrics for sites that pull (off unless ``metrics.listen`` is set)."""

    listen: tuple[str, int] | None = None


@dataclass(frozen=True)
class UpgradePolicy:
    """The policy's ``agent:`` section: the release this point runs, the local-time window in which the agent
    may download and change to it, the download's bandwidth cap, and whether an older release may run."""

    version: str | None = None
    window: tuple[int, int] = (0, 24 * 60)  # minutes of local time, [start, end); start > end wraps midnight
    window_text: str = ANY_TIME
    max_kbps: int = DEFAULT_MAX_KBPS
    downgrade: bool = False

    def in_window(self, minute_of_day: int) -> bool:
        start, end = self.window
        if start < end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end


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
    # The local check settings the file gives (as written: "fallback.usage" or "usage"), and the digest of
    # the fetched policy these check settings come from (None: they are the local file's).
    local_check_keys: tuple[str, ...] = ()
    policy_digest: str | None = None
    upgrade: UpgradePolicy = field(default_factory=UpgradePolicy)  # only ever from a signed policy

    def enabled(self, check_id: str) -> bool:
        return check_id not in self.disabled_checks


TOP_KEYS = ("point", "collector", "state_dir", *CHECK_KEYS, "fallback", "log", "metrics")


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
    root = parse_yaml(text, file)
    _refuse_signed_only(root)
    top = root.mapping(TOP_KEYS, required=("point",))
    cfg = AgentConfig(
        path=file,
        point=_point(top["point"]),
        collector=optional(top, "collector", CollectorConfig(), _collector),
        state_dir=optional(top, "state_dir", _default_state_dir(), lambda n: n.str()),
        intervals=dict(DEFAULT_INTERVALS), core_network=None, isolation=None, usage=None, devices=None,
    )
    local, prefix = _local_checks(top)
    _apply_checks(cfg, local)
    cfg.local_check_keys = tuple(prefix + k for k in CHECK_KEYS if k in local)
    if "log" in top:
        log = top["log"].mapping(("level",))
        cfg.log_level = optional(log, "level", "INFO", lambda n: n.choice(("DEBUG", "INFO", "WARNING", "ERROR")))
    if "metrics" in top and top["metrics"].value is not None:
        metrics = top["metrics"].mapping(("listen",))
        cfg.metrics = MetricsConfig(listen=optional(metrics, "listen", None, Node.host_port))
    return cfg


def with_policy(cfg: AgentConfig, policy: dict, digest: str) -> AgentConfig:
    """The config to check with under a verified policy: ``cfg``'s bootstrap, every check setting from ``policy``
    (a section it leaves out is as if absent from a file, never the local one). Raises ConfigError naming
    the policy's digest and the field when this agent cannot run the policy."""
    node = from_data(policy, f"policy {digest}")
    out = replace(cfg, intervals=dict(DEFAULT_INTERVALS), disabled_checks=set(), policy_digest=digest,
                  upgrade=UpgradePolicy())
    section = node.mapping(POLICY_KEYS)
    _apply_checks(out, section)
    out.upgrade = optional(section, "agent", UpgradePolicy(), upgrade_policy)
    return out


def _local_checks(top: dict[str, Node]) -> tuple[dict[str, Node], str]:
    """The local check settings: the ``fallback`` section, or (older files) the same keys at the top level."""
    if "fallback" not in top or top["fallback"].value is None:
        local, prefix = {k: top[k] for k in CHECK_KEYS if k in top}, ""
    else:
        for key in CHECK_KEYS:
            if key in top:
                top[key].fail(f"'{key}' is a check setting and the file has a 'fallback' section: move it there")
        _refuse_signed_only(top["fallback"])
        local, prefix = top["fallback"].mapping(CHECK_KEYS), "fallback."
    return local, prefix


def _refuse_signed_only(node: Node) -> None:
    for key in SIGNED_ONLY_KEYS:
        child = node.child(key)
        if child is not None:
            child.fail(f"'{key}' (which agent release runs) may only come from the collector's signed policy, "
                       "never from the local file")


def _apply_checks(cfg: AgentConfig, section: dict[str, Node]) -> None:
    # Imported here so that `agent.config` stays importable on its own; families import lazily what is heavy.
    from agent.checks import registry

    cfg.intervals = optional(section, "intervals", dict(DEFAULT_INTERVALS), _intervals)
    for name, parser in registry.SECTION_PARSERS.items():
        node = section.get(name)
        setattr(cfg, name, parser(node if node is not None and node.value is not None else None))
    if "checks" in section:
        cfg.disabled_checks = _checks(section["checks"], registry.known_check_ids(cfg))


def _point(node: Node) -> PointConfig:
    m = node.mapping(("code", "name"), required=("code",))
    code = m["code"].str(max_len=40)
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,40}", code):
        m["code"].fail(f"'{code}' is not a point code (letters, digits, '-' or '_')")
    return PointConfig(code=code, name=optional(m, "name", code, lambda n: n.str(max_len=200)))


def _collector(node: Node) -> CollectorConfig:
    m = node.mapping(("url", "ca_bundle", "token_file", "insecure_skip_verify", "timeout", "policy_refresh"))
    url = optional(m, "url", None, lambda n: n.str())
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        m["url"].fail(f"'{url}' is not an http:// or https:// URL")
    return CollectorConfig(
        url=url.rstrip("/") if url else None,
        ca_bundle=optional(m, "ca_bundle", None, lambda n: n.str()),
        token_file=optional(m, "token_file", None, lambda n: n.str()),
        insecure_skip_verify=optional(m, "insecure_skip_verify", False, Node.bool),
        timeout=optional(m, "timeout", 10.0, lambda n: n.duration(0.1, 300)),
        policy_refresh=optional(m, "policy_refresh", 300.0, lambda n: n.duration(30, 86400)),
    )


def upgrade_policy(node: Node) -> UpgradePolicy:
    """``agent: {version, window, max_kbps, downgrade}``; window is required when version is set."""
    from agent.versions import canonical

    m = node.mapping(("version", "window", "max_kbps", "downgrade"))
    version = None
    if "version" in m and m["version"].value is not None:
        if not isinstance(m["version"].value, str):  # YAML reads 0.30 as the number 0.3: say so, not guess
            m["version"].fail(f"expected the version as quoted text such as \"0.2.1\", got {m['version'].value!r}")
        version = m["version"].str(max_len=40).strip()
        try:
            version = canonical(version)  # "0.2" names the release "0.2.0": one text per version
        except ValueError as exc:
            m["version"].fail(str(exc))
        if "window" not in m or m["window"].value is None:
            node.fail("missing required key 'window' (when the agent may upgrade, local time, e.g. \"02:00-05:00\"; "
                      "\"00:00-24:00\" for any time)")
    window_text = optional(m, "window", ANY_TIME, _window)
    return UpgradePolicy(version=version, window=window_minutes(window_text), window_text=window_text,
                         max_kbps=optional(m, "max_kbps", DEFAULT_MAX_KBPS, lambda n: n.int(1, 100000)),
                         downgrade=optional(m, "downgrade", False, Node.bool))


def _window(node: Node) -> str:
    text = node.str(max_len=20).strip()
    match = _WINDOW.match(text)
    if not match:
        node.fail(f"'{text}' is not a time window HH:MM-HH:MM (local time, e.g. 02:00-05:00)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        node.fail(f"'{text}' holds a time that does not exist (00:00 to 23:59, or 24:00 as an end)")
    start, end = window_minutes(text)
    if start == end % (24 * 60) and text != ANY_TIME:
        node.fail(f"'{text}' is an empty window (use {ANY_TIME} for any time)")
    return text


def window_minutes(text: str) -> tuple[int, int]:
    """A valid ``HH:MM-HH:MM`` as minutes of the day, (start, end)."""
    h1, m1, h2, m2 = (int(g) for g in _WINDOW.match(text).groups())
    return h1 * 60 + m1, h2 * 60 + m2


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
