"""Write docs/en/configuration.md from the validators themselves, so the reference cannot drift from the code.

    .venv/bin/python docs/en/gen_config_reference.py          # rewrite docs/en/configuration.md
    .venv/bin/python docs/en/gen_config_reference.py --check  # exit 1 if the committed file is stale

Nothing here restates a key, a default or a range by hand:
- agent.yaml: the example configs (configs/agent.example.yaml with configs/devices.example.yaml's devices,
  plus COVERAGE for keys the examples leave out) are parsed by ``agent.config.parse`` with the parser's own
  accessors (agent/confignode.py ``Node.mapping``/``str``/``duration``/… and ``optional``) traced: every
  mapping's allowed and required keys, every value's accessor with its range, every default ``optional``
  falls back to.
- the collector config: the top-level keys ``Settings.load`` takes (probed), the sections the collector
  reads from ``settings.extra`` (found in the code), ``ingest`` (``Admission`` DEFAULTS), ``retention``
  (``RetentionPolicy``, probed), and ``alerts`` (``DEFAULT_RULES``, ``DEFAULT_INHIBIT``, the keys each
  ``_mapping`` allows, ``NotifierConfig`` defaults, each notifier type's required and optional keys).
- the command lines of pointwatch-agent and pointwatch-collector, walked from their argparse parsers.
- environment variables: every ``POINTWATCH_*`` name the product code reads.
tests/test_docs.py runs this with --check.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import re
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "en" / "configuration.md"
sys.path.insert(0, str(ROOT))

# Keys the example configs leave out, so the trace sees their accessor too (values are only examples).
COVERAGE = """
point: {code: "620102001001"}
collector: {url: "https://10.10.1.5:8443", ca_bundle: /etc/pointwatch/ca.pem, token_file: /x/token,
            insecure_skip_verify: false, policy_refresh: 5m}
log: {level: INFO}
metrics: {listen: "127.0.0.1:9464"}
fallback:
  isolation: {timeout: 1s, internet_canaries: [{url: "http://example.com/", expect_status: 200, contains: x,
              header: "Server: x"}]}
  usage: {allowed_software: [todesk], exempt_software: ["*DingTalkGov*"]}
  checks: {disabled: [host.resources]}
  core_network:
    loss_warn: 0.2
    rtt_warn: 200ms
    icmp: [{target: 10.0.0.1, fallback_port: 443}]
    dns: [{name: ybj.example.gov.cn, expect: [10.10.1.20]}]
    https: [{url: "https://10.10.1.20/health", name: 网上办理渠道, expect_status: 200}]
  devices:
    - {kind: queue, icmp: {host: 10.0.0.1, count: 2}, tcp: ["10.0.0.1:80", 8080], http: {url: "http://10.0.0.1/",
       expect_status: 200, contains: ok, verify_tls: true}}
    - {kind: printer, cups: {queue: q, server: "localhost:631"}, escl: {url: "http://10.0.0.2", root: eSCL}}
    - {kind: printer, name: p2, host: 10.0.0.3, cups: {uri: "ipp://10.0.0.3/ipp/print"}, escl: true}
    - {kind: scanner, usb: {vid: "04c5", pid: "1234", serial: S1}}
    - {kind: copier, timeout: 2s, snmp: {host: 10.0.0.4, version: 2c, community: public, context: c,
       printer_mib: true, timeout: 2s}}
"""


# -- tracing the agent's parser --------------------------------------------------------------------------
class _Trace:
    def __init__(self):
        self.keys: dict[str, list[str]] = {}  # mapping path -> allowed keys, in the parser's order
        self.required: dict[str, set[str]] = {}
        self.kinds: dict[str, list[str]] = {}  # value path -> accessor descriptions
        self.defaults: dict[str, list] = {}  # value path -> every default seen (several: it depends)
        self.module: dict[str, str] = {}  # mapping path -> the module that reads it
        self.depth = 0
        self.files: tuple[str, ...] = ()  # only values from these files (not the software catalogue's)

    def default(self, path: str, value) -> None:
        seen = self.defaults.setdefault(path, [])
        if value not in seen:
            seen.append(value)


def _norm(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


def _dur(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _describe(name: str, args: tuple, kwargs: dict) -> str:
    lo = args[0] if args else kwargs.get("lo")
    hi = args[1] if len(args) > 1 else kwargs.get("hi")
    if name == "duration":
        lo = 0.001 if lo is None else lo
        hi = 7 * 86400 if hi is None else hi
        return f"duration {_dur(lo)}–{_dur(hi)}"
    if name in ("int", "float"):
        word = "whole number" if name == "int" else "number"
        rng = f" {lo:g}–{hi:g}" if lo is not None and hi is not None else (f" ≥ {lo:g}" if lo is not None else "")
        return word + rng
    if name == "choice":
        return "one of " + ", ".join(f"`{o}`" for o in args[0])
    if name == "str":
        max_len = kwargs.get("max_len", 500)
        return "text" + (f" (≤ {max_len} characters)" if max_len != 500 else "")
    if name == "host_port":
        port = args[0] if args else kwargs.get("default_port")
        return "host:port" if port is None else f"host[:port] (port {port} if left out)"
    return {"bool": "true/false", "port": "port 1–65535", "host": "IP address or host name", "cidr": "subnet (CIDR)",
            "str_list": "list of text", "items": "list"}.get(name, name)


class _Same:
    """A default that is another key's value (a target's name defaults to the target)."""

    def __init__(self, key: str):
        self.key = key

    def __eq__(self, other):
        return isinstance(other, _Same) and other.key == self.key

    def __hash__(self):
        return hash(self.key)


@contextmanager
def _traced():
    from agent import confignode
    from agent.confignode import Node

    trace = _Trace()

    class PathDict(dict):
        path = ""

    saved = {}

    def wrap(name):
        original = getattr(Node, name)

        def traced(self, *args, **kwargs):
            if trace.depth == 0 and self.file in trace.files:
                kinds = trace.kinds.setdefault(_norm(self.path), [])
                text = _describe(name, args, kwargs)
                if text not in kinds:
                    kinds.append(text)
            trace.depth += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                trace.depth -= 1
        saved[name] = original
        setattr(Node, name, traced)

    for name in ("str", "int", "float", "bool", "choice", "duration", "port", "host", "host_port", "cidr",
                 "str_list"):
        wrap(name)
    original_mapping = Node.mapping

    def mapping(self, allowed, required=()):
        allowed, required = list(allowed), list(required)
        if trace.depth == 0 and self.file in trace.files:
            keys = trace.keys.setdefault(_norm(self.path), [])
            keys.extend(k for k in allowed if k not in keys)
            trace.required.setdefault(_norm(self.path), set()).update(required)
            caller = Path(sys._getframe(1).f_code.co_filename).resolve()
            trace.module.setdefault(_norm(self.path), str(caller.relative_to(ROOT)) if ROOT in caller.parents
                                    else caller.name)
        out = PathDict(original_mapping(self, allowed, required))
        out.path = self.path
        return out

    Node.mapping = mapping
    original_optional = confignode.optional

    def optional(section, key, default, read):
        path = _norm(f"{section.path}.{key}" if getattr(section, "path", "") else key)
        files = {n.file for n in section.values()} if section else set(trace.files)
        if not files & set(trace.files) or dataclasses.is_dataclass(default) or callable(default):
            pass
        elif isinstance(default, dict):
            for k, v in default.items():
                trace.default(f"{path}.{k}", v)
        else:
            sibling = next((k for k, n in section.items() if k != key and isinstance(default, str) and default
                            and n.value == default), None)
            trace.default(path, _Same(sibling) if sibling else default)
        return original_optional(section, key, default, read)

    patched = [m for name, m in list(sys.modules.items())
               if (name == "agent" or name.startswith("agent.")) and getattr(m, "optional", None) is original_optional]
    for module in patched:
        module.optional = optional
    try:
        yield trace
    finally:
        Node.mapping = original_mapping
        for name, original in saved.items():
            setattr(Node, name, original)
        for module in patched:
            module.optional = original_optional


def agent_trace() -> _Trace:
    import yaml

    import agent.checks.registry  # noqa: F401 - every family's parser, so `optional` is patched in each
    from agent import config

    example = yaml.safe_load((ROOT / "configs" / "agent.example.yaml").read_text(encoding="utf-8"))
    example.setdefault("fallback", {})["devices"] = yaml.safe_load(
        (ROOT / "configs" / "devices.example.yaml").read_text(encoding="utf-8"))["devices"]
    with _traced() as trace:
        trace.files = ("agent.example.yaml", "coverage")
        config.parse(yaml.safe_dump(example, allow_unicode=True), "agent.example.yaml")
        config.parse(COVERAGE, "coverage")
    return trace


def _fmt_one(value, kinds: list[str]) -> str:
    if value is None:
        return "—"
    if isinstance(value, _Same):
        return f"the value of `{value.key}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "empty"
    if isinstance(value, float) and any(k.startswith("duration") for k in kinds):
        return f"`{_dur(value)}`"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "`[]`" if not value else "`[" + ", ".join(map(str, value)) + "]`"
    return f"`{value}`"


def _fmt_default(values: list | None, kinds: list[str]) -> str:
    if not values:
        return "—"
    if len(values) > 1:
        return "depends on the other keys (e.g. " + ", ".join(_fmt_one(v, kinds) for v in values[:3]) + ")"
    return _fmt_one(values[0], kinds)


def _rows(trace: _Trace, parent: str, out: list[str], done: set[str]) -> None:
    for key in trace.keys.get(parent, []):
        path = f"{parent}.{key}" if parent else key
        if path in done:
            continue
        done.add(path)
        kinds = list(trace.kinds.get(path, []))
        if path in trace.keys:
            kinds.append("mapping")
        item = path + "[]"
        if item in trace.keys or item in trace.kinds:
            kinds.append("list")
        value = "; ".join(kinds) or f"see `{trace.module.get(parent, 'the code')}`"
        required = "yes" if key in trace.required.get(parent, set()) else ""
        out.append(f"| `{path}` | {value} | {_fmt_default(trace.defaults.get(path), kinds)} | {required} |")
        if item in trace.keys or item in trace.kinds:
            item_kinds = list(trace.kinds.get(item, [])) + (["mapping"] if item in trace.keys else [])
            out.append(f"| `{item}` | {'; '.join(item_kinds)} | | |")
            _rows(trace, item, out, done)
        _rows(trace, path, out, done)


def agent_section(trace: _Trace) -> list[str]:
    lines = ["## Agent: `agent.yaml`", "",
             "Read by `agent.config.parse` (agent/config.py and each check family's `parse_config`). Unknown keys, "
             "values out of range and a missing required key are refused with the file, line and field "
             "(`pointwatch-agent check` exits 2). Durations are written `500ms`, `60s`, `5m`, `1h`, `1d` or as plain "
             "seconds. `[]` in a key marks an item of a list. `configs/agent.example.yaml` and "
             "`configs/devices.example.yaml` show the keys in use.", "",
             "The file is the agent's *bootstrap* (`point`, `collector`, `state_dir`, `log`, `metrics`); the check "
             "settings under `fallback` run only until the agent holds a verified policy from the collector. "
             "That policy has the same schema as `fallback` at its root, without `checks` (keys "
             f"{', '.join(f'`{k}`' for k in _policy_keys())}); once it exists, every local check setting is "
             "ignored (one warning names them). Older files that give the check settings at the top level "
             f"({', '.join(f'`{k}`' for k in _check_keys())}) mean the same as under `fallback`; a file may not "
             "do both.", ""]
    for top in trace.keys.get("", []):
        if top in _check_keys():
            continue  # documented once, under `fallback`
        out: list[str] = []
        _rows(trace, "", out, {k for k in trace.keys.get("", []) if k != top})
        lines += [f"### `{top}`", "", "| key | value | default | required |", "|---|---|---|---|", *out, ""]
    policy = policy_trace()
    for key in _signed_only_keys():
        out = []
        _rows(policy, "", out, {k for k in policy.keys.get("", []) if k != key})
        lines += [f"### `{key}` (signed policy only)", "",
                  "Only a policy signed by the collector may hold it; the local file (top level or `fallback`) "
                  "is refused when it does. docs/en/operations.md (self-upgrade) says what the agent does with it.",
                  "", "| key | value | default | required |", "|---|---|---|---|", *out, ""]
    return lines


# A policy holding every policy-only key, so the trace sees their accessors (values are only examples).
COVERAGE_POLICY = {"agent": {"version": "0.2.1", "window": "02:00-05:00", "max_kbps": 64, "downgrade": False}}


def policy_trace() -> _Trace:
    from agent import config

    bootstrap = config.parse(COVERAGE, "coverage")
    with _traced() as trace:
        trace.files = ("policy coverage",)  # agent.confignode.from_data names a policy by its digest
        config.with_policy(bootstrap, COVERAGE_POLICY, "coverage")
    return trace


def _signed_only_keys() -> tuple[str, ...]:
    from agent.config import SIGNED_ONLY_KEYS

    return SIGNED_ONLY_KEYS


def _check_keys() -> tuple[str, ...]:
    from agent.config import CHECK_KEYS

    return CHECK_KEYS


def _policy_keys() -> tuple[str, ...]:
    from agent.config import POLICY_KEYS

    return POLICY_KEYS


# -- the collector ---------------------------------------------------------------------------------------
def _settings_keys() -> list[str]:
    """The top-level keys Settings.load takes into its own fields: probed, one marker per field."""
    import os
    import tempfile

    import yaml

    from collector.settings import Settings

    fields = [f.name for f in dataclasses.fields(Settings) if f.name != "extra"]
    markers = {"data_dir": "/probe", "database_url": "sqlite:///probe", "public_url": "http://probe",
               "max_body_bytes": 7}
    saved = os.environ.pop("POINTWATCH_DATABASE_URL", None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.yaml"
            path.write_text(yaml.safe_dump({f: markers.get(f, "probe") for f in fields}), encoding="utf-8")
            loaded = Settings.load(str(path), None)
    finally:
        if saved is not None:
            os.environ["POINTWATCH_DATABASE_URL"] = saved
    return [f for f in fields if str(getattr(loaded, f)) == str(markers.get(f, "probe")) and
            f not in loaded.extra]


def extra_sections() -> list[str]:
    """The sections the collector reads from ``settings.extra``, found in its code."""
    found = set()
    for path in (ROOT / "collector").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "extra" in line:
                found.update(re.findall(r'\.get\("([a-z_]+)"\)', line))
    return sorted(found)


def collector_section() -> list[str]:
    from collector.alerts import config as alerts_config
    from collector.alerts.configbase import NotifierConfig
    from collector.alerts.notifiers import notifier_types
    from collector.alerts.rules import TITLES
    from collector.ingest.admission import DEFAULTS as INGEST
    from collector.settings import Settings
    from collector.store.retention import RetentionPolicy

    defaults = Settings()
    lines = ["## Collector: `collector.yaml` (`--config`)", "",
             "Every key is optional. `configs/collector.example.yaml` shows them in use.", "",
             "| key | default | |", "|---|---|---|"]
    for key in _settings_keys():
        value = getattr(defaults, key)
        note = "or `POINTWATCH_DATABASE_URL`; unset: SQLite in the data directory" if key == "database_url" else (
            "or `--data-dir`" if key == "data_dir" else "")
        lines.append(f"| `{key}` | {_fmt_default([None if value is None else str(value)], [])} | {note} |")
    sections = extra_sections()
    lines += ["", "Sections read by the collector: " + ", ".join(f"`{s}`" for s in sections) + ".", ""]
    unknown = set(sections) - {"alerts", "ingest", "retention", "metrics", "agent_releases"}
    if unknown:
        raise SystemExit(f"gen_config_reference.py: describe the new collector section(s) {sorted(unknown)}")

    lines += ["### `metrics` (collector/settings.py)", "", "| key | default |", "|---|---|",
              "| `metrics.bearer_token_file` | unset: `/metrics` is open; a file holding one word of 16+ characters "
              "makes `/metrics` require `Authorization: Bearer <token>` |", ""]
    from collector.releases.config import KEYS as RELEASE_KEYS
    from collector.releases.config import ReleaseSettings

    release_defaults = ReleaseSettings()
    release_notes = {
        "public_keys": "`[]`: no release is trusted (`agent-release add` refuses every one). Base64 of the raw "
                       "32-byte Ed25519 public keys `agent-release keygen` prints; sent to agents in the enrolment "
                       "answer (`release_keys`)",
        "pause_failed_share": f"`{release_defaults.pause_failed_share:g}`: 0–1; the collector pauses a release in "
                              "one rollout stage (that stage only) when more than this share of the stage's points "
                              "failed to upgrade to it for a build fault (`does_not_start`, `rolled_back`), and at "
                              "least `pause_min_failed_points` did",
        "pause_min_failed_points": f"`{release_defaults.pause_min_failed_points}`: 1–100000; the fewest distinct "
                                   "points failing a stage for a build fault before the collector pauses the release "
                                   "there: each PC writes its own failure reports, so fewer never stop a rollout (a "
                                   "stage of fewer points never pauses by itself)",
    }
    lines += ["### `agent_releases` (collector/releases/config.py)", "", "| key | default |", "|---|---|"]
    lines += [f"| `agent_releases.{k}` | {release_notes[k]} |" for k in RELEASE_KEYS]
    lines += [""]
    lines += ["### `ingest` (collector/ingest/admission.py)", "", "| key | default |", "|---|---|"]
    lines += [f"| `ingest.{k}` | `{v}` |" for k, v in INGEST.items()]

    base = RetentionPolicy()
    taken = []
    for f in dataclasses.fields(RetentionPolicy):
        probe = RetentionPolicy.from_settings(type("S", (), {"extra": {"retention": {f.name: 7}}})())
        if getattr(probe, f.name) == 7 and getattr(base, f.name) != 7:
            taken.append(f.name)
    lines += ["", "### `retention` (collector/store/retention.py)", "", "| key | default |", "|---|---|"]
    lines += [f"| `retention.{k}` | `{getattr(base, k)}` |" for k in taken]

    seen: dict[str, list[str]] = {}
    original = alerts_config._mapping

    def mapping(node, where, allowed):
        seen.setdefault(_norm(where), sorted(allowed))
        return original(node, where, allowed)

    import yaml

    example = yaml.safe_load((ROOT / "configs" / "collector.example.yaml").read_text(encoding="utf-8"))["alerts"]
    example["inhibit"] = [{"source": s, "targets": list(t)} for s, t in alerts_config.DEFAULT_INHIBIT]
    alerts_config._mapping = mapping
    try:
        alerts_config.parse(example)
    finally:
        alerts_config._mapping = original
    empty = alerts_config.parse(None)
    lines += ["", "### `alerts` (collector/alerts/config.py)", "", "| key | default |", "|---|---|",
              f"| `alerts.enabled` | `{str(empty.enabled).lower()}` |", f"| `alerts.tick` | `{_dur(empty.tick_s)}` |",
              f"| `alerts.lease` | `{_dur(empty.lease_s)}` |"]
    extra_top = [k for k in seen[""] if k not in ("enabled", "tick", "lease")]
    lines.append("| " + ", ".join(f"`alerts.{k}`" for k in extra_top) + " | below |")
    lines += ["", "#### `alerts.rules.<rule>`", "",
              "Each rule takes `enabled`, `severity` (" + ", ".join(f"`{s}`" for s in alerts_config.SEVERITIES) +
              "), `failure_threshold`, `success_threshold`, `for` and its own thresholds:", "",
              "| rule | 标题 | severity | failure_threshold | success_threshold | for | thresholds |",
              "|---|---|---|---|---|---|---|"]
    for rid, rc in alerts_config.DEFAULT_RULES.items():
        params = ", ".join(f"`{k}: {v:g}`" if isinstance(v, float) else f"`{k}: {v}`" for k, v in rc.params.items())
        lines.append(f"| `{rid}` | {TITLES.get(rid, '')} | {rc.severity} | {rc.failure_threshold} | "
                     f"{rc.success_threshold} | {_dur(rc.for_s) if rc.for_s else '0'} | {params or '—'} |")
    inhibit = "; ".join(f"`{s}` mutes {', '.join('every other rule' if t == '*' else f'`{t}`' for t in ts)}"
                        for s, ts in alerts_config.DEFAULT_INHIBIT)
    lines += ["", "#### `alerts.inhibit` (list of `{source, targets}`)", "",
              f"Default: {inhibit} (on the same point). Giving `inhibit` replaces the default list.", "",
              "#### `alerts.maintenance[]`", "",
              "Keys: " + ", ".join(f"`{k}`" for k in seen.get("maintenance[]", [])) +
              ". Either `daily: \"HH:MM-HH:MM\"` (with optional `weekdays`, `mon`…`sun`) or `start` and `end`; "
              "`timezone` defaults to `Asia/Shanghai`.", "",
              "#### `alerts.notifiers[]`", "", "| key (every type) | default |", "|---|---|"]
    nc = NotifierConfig("", "", {})
    common = {"timeout": _dur(nc.timeout_s), "max_attempts": nc.max_attempts, "backoff": _dur(nc.backoff_s),
              "backoff_max": _dur(nc.backoff_max_s), "send_resolved": str(nc.send_resolved).lower(),
              "regions": "every region", "severities": "every severity", "name": "required", "type": "required"}
    for key in sorted(alerts_config.NOTIFIER_COMMON, key=lambda k: (k not in ("name", "type"), k)):
        lines.append(f"| `{key}` | {common.get(key, '—')} |")
    lines += ["", "| type | required | optional |", "|---|---|---|"]
    for name, cls in notifier_types().items():
        lines.append(f"| `{name}` | {', '.join(f'`{k}`' for k in cls.required)} | "
                     f"{', '.join(f'`{k}`' for k in cls.optional)} |")
    lines.append("")
    return lines


# -- command lines and environment -----------------------------------------------------------------------
class _Caught(Exception):
    def __init__(self, parser):
        self.parser = parser


def agent_parser() -> argparse.ArgumentParser:
    from agent import cli

    original = argparse.ArgumentParser.parse_args

    def catch(self, *args, **kwargs):
        raise _Caught(self)

    argparse.ArgumentParser.parse_args = catch
    try:
        cli.main([])
    except _Caught as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise SystemExit("agent/cli.py main() did not build a parser")


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, str, list[str]]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if helps.get(name) == argparse.SUPPRESS:
                    continue
                options = []
                for a in sub._actions:
                    if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) or a.help == argparse.SUPPRESS:
                        continue
                    flag = ", ".join(a.option_strings) or a.dest
                    if a.choices:
                        flag += " {" + ",".join(map(str, a.choices)) + "}"
                    elif a.nargs != 0 and a.option_strings:
                        flag += f" {a.metavar or a.dest.upper()}"
                    options.append(flag)
                out.append((f"{prefix} {name}", helps.get(name) or "", options))
                out += _commands(sub, f"{prefix} {name}")
    return out


def cli_section() -> list[str]:
    from collector.cli import build_parser

    lines = ["## Command lines", "",
             "Every `pointwatch-collector` command also takes `--config FILE` and `--data-dir DIR`, before or "
             "after its name (left out below).", ""]
    for title, parser, prog in (("pointwatch-agent", agent_parser(), "pointwatch-agent"),
                                ("pointwatch-collector", build_parser(), "pointwatch-collector")):
        lines += [f"### `{title}`", "", "| command | what it does | options |", "|---|---|---|"]
        for cmd, text, options in _commands(parser, prog):
            shown = [o for o in options if not o.startswith(("--config", "--data-dir"))
                     or title == "pointwatch-agent"]
            lines.append(f"| `{cmd}` | {text.replace('|', '/')} | {', '.join(f'`{o}`' for o in shown)} |")
        lines.append("")
    return lines


def env_section() -> list[str]:
    found: dict[str, set[str]] = {}
    for pkg in ("agent", "collector"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for name in re.findall(r"environ(?:\.get\(|\[)\"(POINTWATCH_[A-Z_]+)\"", path.read_text(encoding="utf-8")):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    lines = ["## Environment variables", "", "Every `POINTWATCH_*` variable the product code reads.", "",
             "| variable | read in |", "|---|---|"]
    lines += [f"| `{name}` | {', '.join(f'`{p}`' for p in sorted(files))} |" for name, files in sorted(found.items())]
    return lines + [""]


def render() -> str:
    head = ["# Configuration reference", "",
            "<!-- Generated by docs/en/gen_config_reference.py from the validators; do not edit by hand. -->",
            "Generated from the code by `docs/en/gen_config_reference.py` (`.venv/bin/python "
            "docs/en/gen_config_reference.py` rewrites it; `tests/test_docs.py` fails when it is stale). "
            "The Chinese manuals explain when to use what: [部署手册](../zh/部署手册.md), [日常运维](../zh/日常运维.md).",
            ""]
    with redirect_stdout(io.StringIO()):
        body = agent_section(agent_trace()) + collector_section() + cli_section() + env_section()
    return "\n".join(head + body).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    opts = args.parse_args(argv)
    text = render()
    if opts.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run .venv/bin/python docs/en/gen_config_reference.py")
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
