"""Where the shipped data files (configs/: catalogues, standards profiles) are, however pointwatch runs.

One lookup for every reader: the source tree or an editable install (configs/ beside the packages), a wheel
install (share/pointwatch/configs under the environment's prefix), and a PyInstaller executable (the
bundle's own configs/).
"""

from __future__ import annotations

import sys
from pathlib import Path


def config_roots() -> list[Path]:
    roots = [Path(__file__).resolve().parents[1] / "configs",
             Path(sys.prefix) / "share" / "pointwatch" / "configs"]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        roots.insert(0, Path(bundle) / "configs")
    return roots


def config_path(relative: str) -> Path:
    """The first existing ``configs/<relative>``; the source-tree path (for error messages) when none is."""
    roots = config_roots()
    for root in roots:
        candidate = root / relative
        if candidate.exists():
            return candidate
    return roots[-1] / relative if getattr(sys, "_MEIPASS", None) else roots[0] / relative
