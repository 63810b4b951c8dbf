"""Policy documents: what one region node or one point sets, and a point's effective policy made from them.

A document is a mapping in the agent config's schema holding check settings only (``POLICY_KEYS``). A
point's effective policy merges the documents of its region's ancestors from the root down, then its own
(mappings merged key by key, lists and scalars replaced), then appends the point's registered devices. It is
validated with the agent's own validator (agent/config.py), so the collector refuses exactly what an agent
would refuse, with the same file/line/field errors.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field

from agent.config import POLICY_KEYS  # what a policy may hold: the agent's own list, defined once
from agent.confignode import ConfigError, Node, parse_yaml

REGISTRY = "registry"  # the provenance of devices the point registry adds


class PolicyError(Exception):
    """A document or a change refused. ``field`` is the dotted path in the agent's schema, ``point`` the point
    whose effective policy it would break (None: the document itself is at fault)."""

    def __init__(self, message: str, *, field: str = "", point: str | None = None, file: str = "",
                 line: int | None = None, code: str = "invalid_policy"):
        super().__init__(message)
        self.field, self.point, self.file, self.line, self.code = field, point, file, line, code

    def as_json(self) -> dict:
        return {"code": self.code, "message": str(self), "field": self.field, "point": self.point,
                "file": self.file, "line": self.line}


@dataclass
class Document:
    """A parsed policy document: the mapping, the text it came from and where each field is in it."""

    body: dict
    source: str
    file: str
    lines: dict[str, int] = field(default_factory=dict)  # dotted field -> line in ``source``


def parse_document(text: str, file: str) -> Document:
    """A policy document from YAML (JSON is YAML too); refused with the file, line and field at fault."""
    try:
        root = parse_yaml(text, file)
    except ConfigError as exc:
        raise PolicyError(str(exc), field=exc.field, file=file, line=exc.line) from None
    if root.value is None:
        root = Node({}, "", 1, file, {})
    try:
        children = root.mapping(POLICY_KEYS)
    except ConfigError as exc:
        raise PolicyError(f"{exc} — a policy holds check settings (and agent: the release to run) only; "
                          "point, collector and state_dir stay in the agent's local file", field=exc.field, file=file, line=exc.line) from None
    for key, child in children.items():
        if key != "devices" and child.value is not None and not child.is_mapping():
            raise PolicyError(str(ConfigError(file, child.line, key, "expected a mapping")), field=key, file=file,
                              line=child.line)
    lines: dict[str, int] = {}
    _collect_lines(root, lines)
    body = {k: v for k, v in (root.value or {}).items() if v is not None}
    return Document(body=json.loads(json.dumps(body, default=str)), source=text, file=file, lines=lines)


def _collect_lines(node: Node, out: dict[str, int]) -> None:
    if node.path and node.line:
        out[node.path] = node.line
    children = node._children
    for child in (children.values() if isinstance(children, dict) else children or []):
        _collect_lines(child, out)


# -- merging ------------------------------------------------------------------------------------------------
@dataclass
class Effective:
    """A point's effective policy and, for each setting, the level that set it (a region path, "point:CODE"
    or ``REGISTRY``). ``origin`` keys are dotted paths to leaves (mappings are merged, so they are no leaf)."""

    policy: dict
    origin: dict[str, str]
    levels: list[str]  # the levels that contributed, root first

    @property
    def digest(self) -> str:
        return digest(self.policy)


def merge(layers: list[tuple[str, dict]], devices: list[dict] | None = None) -> Effective:
    """``layers``: (level, document body) from the root down. Mappings merge key by key; anything else
    (lists included) is replaced by the lower level's value. Registered ``devices`` are appended last."""
    policy: dict = {}
    origin: dict[str, str] = {}
    for level, body in layers:
        _merge_into(policy, body, level, "", origin)
    if devices:
        merged = list(policy.get("devices") or [])
        policy["devices"] = merged + copy.deepcopy(devices)
        origin.setdefault("devices", REGISTRY)
        if origin["devices"] != REGISTRY:
            origin["devices"] = f"{origin['devices']} + {REGISTRY}"
    return Effective(policy, origin, [level for level, _ in layers])


def _merge_into(target: dict, body: dict, level: str, prefix: str, origin: dict[str, str]) -> None:
    for key, value in body.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value, level, path, origin)
            continue
        for stale in [p for p in origin if p == path or p.startswith(path + ".")]:
            del origin[stale]
        target[key] = copy.deepcopy(value)
        if isinstance(value, dict):
            _mark(value, level, path, origin)
        else:
            origin[path] = level


def _mark(value: dict, level: str, prefix: str, origin: dict[str, str]) -> None:
    if not value:
        origin[prefix] = level
    for key, child in value.items():
        path = f"{prefix}.{key}"
        if isinstance(child, dict):
            _mark(child, level, path, origin)
        else:
            origin[path] = level


def digest(policy: dict) -> str:
    """The contract's digest: sha256 over the canonical JSON of the policy mapping."""
    canonical = json.dumps(policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


# -- validation ---------------------------------------------------------------------------------------------
def validate(policy: dict, point_code: str, label: str) -> None:
    """Run the agent's own validator over the effective policy as the point's agent takes a fetched policy
    (``with_policy``: a local file may not hold ``agent:``, a signed policy may); ConfigError if refused."""
    import yaml

    from agent import config as agent_config

    bootstrap = agent_config.parse(yaml.safe_dump({"point": {"code": point_code}}), label)
    agent_config.with_policy(bootstrap, policy, label)


def where_in(document: Document, field_path: str) -> int | None:
    """The line of ``field_path`` (or of its nearest enclosing field) in the document, if it sets it."""
    path = field_path
    while path:
        if path in document.lines:
            return document.lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def diff(before: dict, after: dict) -> list[dict]:
    """What a change changes, leaf by leaf: [{path, before, after}] (None where a side has nothing)."""
    a, b = _flatten(before), _flatten(after)
    return [{"path": p, "before": a.get(p), "after": b.get(p)} for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]


def _flatten(value, prefix: str = "", out: dict | None = None) -> dict:
    out = {} if out is None else out
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _flatten(child, f"{prefix}.{key}" if prefix else key, out)
    elif prefix:
        out[prefix] = value
    return out


# -- showing ------------------------------------------------------------------------------------------------
def settings_of(policy: dict, origin: dict[str, str]) -> list[tuple[str, str, str]]:
    """(setting, value as YAML, the level that set it) of every leaf of a policy, in the policy's order."""
    import yaml

    rows = []
    for path, value in _flatten(policy).items():
        text = yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, width=10**6).strip()
        rows.append((path, text.removesuffix("...").strip(), origin.get(path, "?")))
    return rows



def annotated_yaml(effective: Effective, header: str = "") -> str:
    """The effective policy as YAML, each setting followed by ``# <level that set it>``."""
    import yaml

    lines = [f"# {header}"] if header else []

    def scalar(value) -> str:
        return yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, width=10**6).strip().removesuffix(
            "\n...").removesuffix("...").strip()

    def emit(mapping: dict, prefix: str, indent: int) -> None:
        for key, value in mapping.items():
            path = f"{prefix}.{key}" if prefix else key
            pad = "  " * indent
            if isinstance(value, dict) and value:
                lines.append(f"{pad}{key}:")
                emit(value, path, indent + 1)
            else:
                lines.append(f"{pad}{key}: {scalar(value)}  # {effective.origin.get(path, '?')}")

    emit(effective.policy, "", 0)
    return "\n".join(lines) + "\n"
