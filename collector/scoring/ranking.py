"""County ranking: many points' sheets, best first."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collector.scoring.sheets import ScoreSheet


@dataclass(frozen=True)
class Ranked:
    rank: int  # competition ranking: equal scores share a rank (1, 1, 3)
    code: str
    score: float
    sheet: ScoreSheet


def rank_points(sheets: Iterable[tuple[str, ScoreSheet]], by: str = "points") -> list[Ranked]:
    """Rank (point code, sheet) pairs by score, highest first, then by code.

    ``by="points"`` ranks on automatic points earned; ``by="share"`` on earned over what the monitor can
    award, for a county whose points are held to different profiles.
    """
    if by not in ("points", "share"):
        raise ValueError("by must be 'points' or 'share'")

    def score(sheet: ScoreSheet) -> float:
        return round(sheet.earned if by == "points" else sheet.share, 9)

    ordered = sorted(((score(s), code, s) for code, s in sheets), key=lambda r: (-r[0], r[1]))
    out: list[Ranked] = []
    for pos, (value, code, sheet) in enumerate(ordered, start=1):
        rank = out[-1].rank if out and out[-1].score == value else pos
        out.append(Ranked(rank, code, value, sheet))
    return out
