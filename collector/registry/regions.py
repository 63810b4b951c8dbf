"""Region paths: 省/市/县/镇/村 named by their path of names, e.g. ``甘肃省/兰州市/城关区``; ``/`` is the root."""

from __future__ import annotations

MAX_DEPTH = 5
LEVEL_NAMES = ("省", "市", "县", "镇", "村")


class RegionError(ValueError):
    pass


def split_path(path: str) -> list[str]:
    return [p.strip() for p in path.strip().strip("/").split("/") if p.strip()]


def normalize_path(path: str) -> str:
    parts = split_path(path)
    if len(parts) > MAX_DEPTH:
        raise RegionError(f"region path '{path}' is deeper than {MAX_DEPTH} levels (省/市/县/镇/村)")
    for part in parts:
        # isprintable() refuses control and format characters (NUL, bidi overrides, zero-width) and lone
        # surrogates: a region name is shown to people and stored in every database.
        # "." and ".." read as "this level" and "the one above" in a path (and in the file names of evidence
        # bundles): never a region's name.
        if len(part) > 60 or "\\" in part or not part.isprintable() or part in (".", ".."):
            raise RegionError(f"region name '{part}' in '{path}' is not valid")
    return "/".join(parts) or "/"


def ancestors(path: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b', 'a/b/c']; the root has none."""
    parts = split_path(path)
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def is_within(path: str, scope: str) -> bool:
    """True when ``path`` is ``scope`` or beneath it; every path is within the root ``/``."""
    scope = normalize_path(scope)
    if scope == "/":
        return True
    path = normalize_path(path)
    return path == scope or path.startswith(scope + "/")


def confine(requested: str, allowed: str) -> str | None:
    """The part of ``requested`` a caller confined to ``allowed`` may see: all of it when it lies within,
    ``allowed`` itself when it was asked from above, None when the two do not overlap."""
    requested, allowed = normalize_path(requested), normalize_path(allowed)
    if is_within(requested, allowed):
        return requested
    return allowed if is_within(allowed, requested) else None
