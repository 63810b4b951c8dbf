"""The forbidden-software catalogue (configs/forbidden_software.yaml) and matching processes against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent.confignode import ConfigError, Node, optional, parse_yaml
from agent.datafiles import config_path
from agent.platform import ProcessInfo

CATEGORIES = ("remote_control", "chat", "p2p", "game", "other")
CATEGORY_LABEL = {"remote_control": "远程控制", "chat": "即时通讯", "p2p": "下载/P2P", "game": "游戏", "other": "其他"}


@dataclass
class Software:
    id: str
    name: str
    category: str
    names: set[str] = field(default_factory=set)   # normalised process names (lowercase, no ".exe")
    paths: list[str] = field(default_factory=list)  # lowercase fragments with "/" separators
    source: str = ""


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
        names = {normalise_name(n) for key in ("windows", "linux") for n in optional(m, key, [], Node.str_list)}
        paths = [normalise_path(p) for p in optional(m, "paths", [], Node.str_list)]
        if not names and not paths:
            item.fail("an entry needs process names (windows/linux) or paths")
        out.append(Software(sid, optional(m, "name", sid, Node.str), m["category"].choice(CATEGORIES), names, paths,
                            optional(m, "source", "", Node.str)))
    return out


def catalogue_ids(catalogue: list[Software]) -> set[str]:
    return {s.id for s in catalogue}


def match_processes(processes: list[ProcessInfo], catalogue: list[Software]) -> list[tuple[Software, ProcessInfo, str]]:
    """(software, process, how) for every running process the catalogue forbids; how = "name" or "path"."""
    hits = []
    for p in processes:
        name = normalise_name(p.name)
        exe = normalise_path(p.exe)
        exe_name = normalise_name(exe.rsplit("/", 1)[-1]) if exe else ""
        for sw in catalogue:
            if name in sw.names or (exe_name and exe_name in sw.names):
                hits.append((sw, p, "name"))
                break
            if exe and any(fragment in exe for fragment in sw.paths):
                hits.append((sw, p, "path"))
                break
    return hits


def require_known(node: Node, ids: list[str], catalogue: list[Software]) -> None:
    known = catalogue_ids(catalogue)
    for i, sid in enumerate(ids):
        if sid not in known:
            raise ConfigError(node.file, node.line, f"{node.path}[{i}]",
                              f"unknown software id '{sid}' (known: {', '.join(sorted(known))})")
