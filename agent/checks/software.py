"""The forbidden-software catalogue (configs/forbidden_software.yaml) and matching processes against it."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.confignode import ConfigError, Node, optional, parse_yaml
from agent.datafiles import config_path
from agent.platform import ProcessInfo

CATEGORIES = ("remote_control", "chat", "p2p", "game", "other")
CATEGORY_LABEL = {"remote_control": "远程控制", "chat": "即时通讯", "p2p": "下载/P2P", "game": "游戏", "other": "其他"}


GLOB_CHARS = frozenset("*?[")


@dataclass
class Software:
    id: str
    name: str
    category: str
    names: set[str] = field(default_factory=set)   # normalised process names (lowercase, no ".exe")
    paths: list[str] = field(default_factory=list)  # lowercase fragments with "/" separators
    source: str = ""
    # Glob patterns (``AnyDesk-*.exe``, ``sunlogin*``): versioned and portable executables carry their
    # version in the file name, so an exact name list lets them through. Compiled, normalised like names.
    name_patterns: list[re.Pattern] = field(default_factory=list)
    path_patterns: list[re.Pattern] = field(default_factory=list)

    def matches_name(self, name: str) -> bool:
        return bool(name) and (name in self.names or any(p.fullmatch(name) for p in self.name_patterns))

    def matches_path(self, exe: str) -> bool:
        return bool(exe) and (any(f in exe for f in self.paths) or any(p.search(exe) for p in self.path_patterns))


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def name_pattern(pattern: str) -> re.Pattern:
    """A process-name glob, case-insensitive and ".exe"-optional like the names it is compared with."""
    return re.compile(fnmatch.translate(normalise_name(pattern)))


def path_pattern(pattern: str) -> re.Pattern:
    """A path glob matched anywhere in the executable's path (as the plain fragments are)."""
    regex = fnmatch.translate(normalise_path(pattern))  # "(?s:…)\Z": anchored at the end only
    return re.compile(regex[:-2] if regex.endswith("\\Z") else regex)


def default_catalogue_path() -> Path | None:
    """The shipped catalogue, configs/forbidden_software.yaml (see agent.datafiles)."""
    path = config_path("forbidden_software.yaml")
    return path if path.is_file() else None


def normalise_name(name: str) -> str:
    name = name.strip().lower()
    return name[:-4] if name.endswith(".exe") else name


def normalise_path(path: str) -> str:
    return path.replace("\\", "/").lower()


def load_catalogue(node: Node) -> list[Software]:
    """``node`` is usage.forbidden_software: "default", "none", or a path to a catalogue file."""
    spec = node.str()
    if spec == "none":
        return []
    path = default_catalogue_path() if spec == "default" else Path(spec)
    if path is None or not path.is_file():
        node.fail(f"forbidden-software catalogue '{spec}' not found" +
                  (" (configs/forbidden_software.yaml is not installed)" if spec == "default" else ""))
    try:
        return parse_catalogue(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        node.fail(f"cannot read the catalogue {path}: {exc}")


def parse_catalogue(text: str, file: str) -> list[Software]:
    root = parse_yaml(text, file).mapping(("version", "categories", "software"), required=("software",))
    out, seen = [], set()
    for item in root["software"].items():
        m = item.mapping(("id", "name", "category", "windows", "linux", "paths", "source"),
                         required=("id", "category"))
        sid = m["id"].str()
        if sid in seen:
            m["id"].fail(f"id '{sid}' is given twice")
        seen.add(sid)
        given = [n for key in ("windows", "linux") for n in optional(m, key, [], Node.str_list)]
        given_paths = optional(m, "paths", [], Node.str_list)
        if not given and not given_paths:
            item.fail("an entry needs process names (windows/linux) or paths")
        out.append(Software(
            sid, optional(m, "name", sid, Node.str), m["category"].choice(CATEGORIES),
            names={normalise_name(n) for n in given if not is_glob(n)},
            paths=[normalise_path(p) for p in given_paths if not is_glob(p)],
            source=optional(m, "source", "", Node.str),
            name_patterns=[name_pattern(n) for n in given if is_glob(n)],
            path_patterns=[path_pattern(p) for p in given_paths if is_glob(p)]))
    return out


def catalogue_ids(catalogue: list[Software]) -> set[str]:
    return {s.id for s in catalogue}


def match_processes(processes: list[ProcessInfo], catalogue: list[Software]) -> list[tuple[Software, ProcessInfo, str]]:
    """(software, process, how) for every running process the catalogue forbids; how = "name" or "path".

    The name alone must be enough: run unprivileged on Linux, the agent cannot read a root daemon's
    executable path (``exe`` is ""), so every entry carries the names its processes run under.
    """
    hits = []
    seen: dict[tuple[str, str], tuple[Software, str] | None] = {}  # this call's processes only
    for p in processes:
        # Many processes share a name and path (svchost.exe, chrome.exe): each pair is matched once.
        key = (p.name, p.exe)
        if key not in seen:
            seen[key] = _match_one(p, catalogue)
        if seen[key] is not None:
            sw, how = seen[key]
            hits.append((sw, p, how))
    return hits


def _match_one(p: ProcessInfo, catalogue: list[Software]) -> tuple[Software, str] | None:
    name = normalise_name(p.name)
    exe = normalise_path(p.exe)
    exe_name = normalise_name(exe.rsplit("/", 1)[-1]) if exe else ""
    for sw in catalogue:
        if sw.matches_name(name) or sw.matches_name(exe_name):
            return sw, "name"
        if sw.matches_path(exe):
            return sw, "path"
    return None


def exempted(process: ProcessInfo, patterns: list[str]) -> str | None:
    """The ``usage.exempt_software`` pattern that exempts this process (a name glob, or a path glob when it
    has a separator), or None. For a mandated edition (政务钉钉 …) that shares the consumer app's names."""
    name, exe = normalise_name(process.name), normalise_path(process.exe)
    exe_name = normalise_name(exe.rsplit("/", 1)[-1]) if exe else ""
    for pattern in patterns:
        if "/" in pattern or "\\" in pattern:
            if exe and path_pattern(pattern if is_glob(pattern) else f"*{pattern}*").search(exe):
                return pattern
        elif any(n and name_pattern(pattern).fullmatch(n) for n in (name, exe_name)):
            return pattern
    return None


def require_known(node: Node, ids: list[str], catalogue: list[Software]) -> None:
    known = catalogue_ids(catalogue)
    for i, sid in enumerate(ids):
        if sid not in known:
            raise ConfigError(node.file, node.line, f"{node.path}[{i}]",
                              f"unknown software id '{sid}' (known: {', '.join(sorted(known))})")
