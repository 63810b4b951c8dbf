"""The offline checks ``evidence verify`` adds for a review bundle (format pointwatch-review/1).

The signature and every file's digest are checked as for any bundle (collector/evidence/verify.py); on top,
review.json must agree with the signed manifest and with itself: each line's counted points within 0..its
points, automatic + manual = total (0 when a veto applies), and every attachment it cites present under its
own SHA-256. Reads nothing but the zip.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
import zlib

FORMAT = "pointwatch-review/1"
UNREADABLE = (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError)  # edited zip bytes


def _close(a, b) -> bool:
    try:
        return math.isclose(float(a), float(b), abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def check_review(zf, manifest: dict, problems: list[str]) -> None:
    names = set(zf.namelist())
    if "review.json" not in names:
        problems.append("review.json: missing from the bundle")
        return
    try:
        doc = json.loads(zf.read("review.json").decode("utf-8"))
        lines, totals = doc["lines"], doc["totals"]
    except UNREADABLE as exc:
        problems.append(f"review.json: cannot be read from the zip ({exc})")
        return
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(f"review.json: not a review ({type(exc).__name__}: {exc})")
        return
    signed = manifest.get("review") or {}
    if (doc.get("review") or {}).get("id") != signed.get("id") or doc.get("reviewer") != manifest.get("reviewer"):
        problems.append("review.json: names another review or reviewer than manifest.json")
    for key in ("total", "automatic", "manual", "vetoed"):
        if totals.get(key) != signed.get(key):
            problems.append(f"review.json: {key} is {totals.get(key)!r} but manifest.json says {signed.get(key)!r}")
    auto = manual = 0.0
    vetoed = False
    for n, line in enumerate(lines, start=1):
        if line.get("monitor_state") == "not_applicable":
            continue
        counted = line.get("counted")
        if counted is None or not (-1e-9 <= float(counted) <= float(line.get("points", 0)) + 1e-9):
            problems.append(f"review.json: line {n} ({line.get('id')}): counted {counted!r} is outside "
                            f"0..{line.get('points')}")
            continue
        if line.get("mode") == "auto":
            auto += float(counted)
        else:
            manual += float(counted)
        vetoed = vetoed or bool(line.get("vetoed"))
    if not (_close(auto, totals.get("automatic")) and _close(manual, totals.get("manual"))):
        problems.append(f"review.json: the lines add up to automatic {auto:g} and manual {manual:g}, not the "
                        f"stated {totals.get('automatic')!r} and {totals.get('manual')!r}")
    expected = 0.0 if vetoed else auto + manual
    if vetoed != bool(totals.get("vetoed")) or not _close(expected, totals.get("total")):
        problems.append(f"review.json: total {totals.get('total')!r} is not automatic + manual = {auto + manual:g}"
                        f"{' (vetoed: 0)' if vetoed else ''}")
    for a in doc.get("attachments") or []:
        name = a.get("file") or ""
        if name not in names:
            problems.append(f"{name or 'attachment'}: cited by review.json but missing from the bundle")
            continue
        try:
            data = zf.read(name)
        except UNREADABLE as exc:
            problems.append(f"{name}: cannot be read from the zip ({exc})")
            continue
        if hashlib.sha256(data).hexdigest() != a.get("sha256"):
            problems.append(f"{name}: its SHA-256 is not the one review.json cites")
