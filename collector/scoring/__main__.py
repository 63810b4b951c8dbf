"""Validate standards profiles and print their totals: ``python -m collector.scoring [DIR or FILE…]``.

Exit 0 when every profile loads, 1 (with the file and item at fault) when one does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

from collector.scoring.profiles import ProfileError, default_dir, load_profile


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths: list[Path] = []
    for arg in args or [str(default_dir())]:
        p = Path(arg)
        paths.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    failed = False
    for path in paths:
        try:
            profile = load_profile(path)
        except (ProfileError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            failed = True
            continue
        cats = " / ".join(f"{k} {v:g}" for k, v in profile.categories.items())
        print(f"{profile.name}: {profile.title} — {profile.scoring}, total {profile.total:g}"
              f" ({cats}); automatic {profile.automatic_points:g}, manual {profile.manual_points:g}"
              f" (assisted {profile.assisted_points:g}), inferred {profile.inferred_points:g},"
              f" {len(profile.items)} items")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
