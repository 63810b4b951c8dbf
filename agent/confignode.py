"""YAML values that remember where they came from, so every config error names file, line and field.

Each check family validates its own section with these accessors (the way blackbox_exporter validates each
prober's module at load), and the first problem found stops the load with a :class:`ConfigError` such as
``agent.yaml:14: core_network.tcp[0].target: port 70000 is out of range 1-65535``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any, NoReturn

import yaml


class ConfigError(Exception):
    def __init__(self, file: str, line: int | None, field: str, problem: str):
        self.file, self.line, self.field, self.problem = file, line, field, problem
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field or '(top level)'}: {problem}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$")


class Node:
    """One YAML value plus its dotted path and line. ``value`` is the plain Python value."""

    def __init__(self, value: Any, path: str, line: int | None, file: str, children: Any = None):
        self.value, self.path, self.line, self.file = value, path, line, file
        self._children = children  # dict[str, Node] for mappings, list[Node] for sequences

    # -- errors ------------------------------------------------------------------------------------
    def fail(self, problem: str) -> NoReturn:
        raise ConfigError(self.file, self.line, self.path, problem)

    # -- structure ---------------------------------------------------------------------------------
    def mapping(self, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Node]:
        if not isinstance(self._children, dict):
            self.fail(f"expected a mapping, got {_kind(self.value)}")
        allowed = set(allowed)
        for key, child in self._children.items():
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                child.fail(f"unknown key '{key}' (known keys: {known})")
        for key in required:
            if key not in self._children:
                self.fail(f"missing required key '{key}'")
        return dict(self._children)

    def items(self) -> list[Node]:
        if self.value is None:
            return []
        if not isinstance(self._children, list):
            self.fail(f"expected a list, got {_kind(self.value)}")
        return list(self._children)

    def is_mapping(self) -> bool:
        return isinstance(self._children, dict)

    def child(self, key: str) -> Node | None:
        """The value under ``key`` of a mapping (None: not there, or this is no mapping), unvalidated."""
        return self._children.get(key) if isinstance(self._children, dict) else None

    # -- scalars -----------------------------------------------------------------------------------
    def str(self, *, allow_empty: bool = False, max_len: int = 500) -> str:
        if isinstance(self.value, bool) or not isinstance(self.value, (str, int, float)):
            self.fail(f"expected text, got {_kind(self.value)}")
        text = str(self.value)
        if not allow_empty and not text.strip():
            self.fail("must not be empty")
        if len(text) > max_len:
            self.fail(f"is longer than {max_len} characters")
        return text

    def int(self, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.fail(f"expected a whole number, got {_kind(self.value)}")
        return self._in_range(self.value, lo, hi)

    def float(self, lo: float | None = None, hi: float | None = None) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            self.fail(f"expected a number, got {_kind(self.value)}")
        return self._in_range(float(self.value), lo, hi)

    def bool(self) -> bool:
        if not isinstance(self.value, bool):
            self.fail(f"expected true or false, got {_kind(self.value)}")
        return self.value

    def choice(self, options: Iterable[str]) -> str:
        options = list(options)
        text = self.str()
        if text not in options:
            self.fail(f"'{text}' is not one of: {', '.join(options)}")
        return text

    def duration(self, lo: float = 0.001, hi: float = 7 * 86400) -> float:
        """Seconds, from ``60``, ``1.5``, ``500ms``, ``60s``, ``5m``, ``1h`` or ``1d``."""
        if isinstance(self.value, bool):
            self.fail("expected a duration such as 60s or 5m, got a boolean")
        m = _DURATION.match(str(self.value)) if isinstance(self.value, (str, int, float)) else None
        if not m:
            self.fail(f"'{self.value}' is not a duration (use e.g. 500ms, 60s, 5m, 1h)")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        return self._in_range(seconds, lo, hi, unit="s")

    def port(self) -> int:
        if isinstance(self.value, str) and self.value.isdigit():
            self.value = int(self.value)
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.fail(f"expected a port number, got {_kind(self.value)}")
        if not 1 <= self.value <= 65535:
            self.fail(f"port {self.value} is out of range 1-65535")
        return self.value

    def host(self) -> str:
        """An IP address or a DNS name."""
        text = self.str(max_len=253).strip()
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            pass
        if re.fullmatch(r"[\d.]+", text) or not _HOSTNAME.match(text):
            self.fail(f"'{text}' is not a valid IP address or host name")
        return text

    def host_port(self, default_port: int | None = None) -> tuple[str, int]:
        """``host:port``, ``[v6]:port``, or a bare host when ``default_port`` is given."""
        text = self.str().strip()
        host, port_text = text, None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else None
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        if port_text is None:
            if default_port is None:
                self.fail(f"'{text}' needs a port, as host:port")
            port = default_port
        else:
            if not port_text.isdigit():
                self.fail(f"port '{port_text}' in '{text}' is not a number")
            port = int(port_text)
            if not 1 <= port <= 65535:
                self.fail(f"port {port} is out of range 1-65535")
        return Node(host, self.path, self.line, self.file).host(), port

    def cidr(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        text = self.str().strip()
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            self.fail(f"'{text}' is not a valid subnet (use CIDR such as 10.0.0.0/8)")

    def str_list(self) -> list[str]:
        return [n.str() for n in self.items()]

    def _in_range(self, v, lo, hi, unit: str = ""):
        if lo is not None and v < lo:
            self.fail(f"{v:g}{unit} is below the minimum {lo:g}{unit}")
        if hi is not None and v > hi:
            self.fail(f"{v:g}{unit} is above the maximum {hi:g}{unit}")
        return v


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (empty value)"
    return {dict: "a mapping", list: "a list", str: f"text '{value}'", bool: f"boolean {value}"}.get(
        type(value), f"{type(value).__name__} {value!r}"
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def parse_yaml(text: str, file: str) -> Node:
    """Parse YAML into a :class:`Node` tree; syntax errors and duplicate keys become ConfigErrors."""
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(file, mark.line + 1 if mark else None, "", f"YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, None, "", f"YAML error: {exc}") from None
    except RecursionError:
        raise ConfigError(file, None, "", "YAML is nested too deeply") from None
    if root is None:
        return Node({}, "", 1, file, {})
    constructor = yaml.SafeLoader(text)
    try:
        return _build(root, "", file, constructor, frozenset())
    except RecursionError:
        raise ConfigError(file, None, "", "YAML is nested too deeply") from None


def _build(node: yaml.Node, path: str, file: str, constructor: yaml.SafeLoader, within: frozenset) -> Node:
    line = node.start_mark.line + 1
    if id(node) in within:  # an alias inside the very thing it names (&a [*a]): it would never end
        raise ConfigError(file, line, path, "an alias (*name) refers to a value that contains it")
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        within = within | {id(node)}
    if isinstance(node, yaml.MappingNode):
        children: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            key = str(key)
            child_path = f"{path}.{key}" if path else key
            if key in children:
                raise ConfigError(file, key_node.start_mark.line + 1, child_path, "key is given twice")
            children[key] = _build(value_node, child_path, file, constructor, within)
        return Node({k: c.value for k, c in children.items()}, path, line, file, children)
    if isinstance(node, yaml.SequenceNode):
        items = [_build(v, f"{path}[{i}]", file, constructor, within) for i, v in enumerate(node.value)]
        return Node([c.value for c in items], path, line, file, items)
    return Node(constructor.construct_object(node, deep=True), path, line, file)


def optional(section: dict[str, Node], key: str, default: Any, read) -> Any:
    """``read(node)`` if the key is present and not empty, else ``default``."""
    node = section.get(key)
    if node is None or node.value is None:
        return default
    return read(node)


def from_data(value: Any, file: str, path: str = "") -> Node:
    """A :class:`Node` tree for plain data that came as JSON (the fetched policy): the same accessors and the
    same errors as for YAML, naming ``file`` (the policy's digest) and the field, without a line."""
    if isinstance(value, dict):
        children = {str(k): from_data(v, file, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        return Node({k: c.value for k, c in children.items()}, path, None, file, children)
    if isinstance(value, list):
        items = [from_data(v, file, f"{path}[{i}]") for i, v in enumerate(value)]
        return Node([c.value for c in items], path, None, file, items)
    return Node(value, path, None, file)
