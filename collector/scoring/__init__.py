"""Scoring points against the standards profiles (configs/standards/*.yaml).

Pure Python, no database and no web framework, so the CLI and the evidence export use it as they are:

    from collector.scoring import load_profiles, Observation, score_period, score_now, rank_points
    profile = load_profiles()["lanzhou-basic-2023"]
    sheet = score_period(profile, observations, start, end, interval=60)

``observations`` is any iterable of :class:`Observation` (receive time, check, target, status[, kind]) in
time order. The collector adds one fact of its own: ``identity.matches_enrolment`` (target ``""``), ok when
the reported fingerprint matches the one pinned at enrolment, fail when it does not — fed like any result,
once per report.
"""

from agent.vocabulary import PROFILE_NAMES
from collector.scoring.engine import Observation, max_age_for, score_now, score_period
from collector.scoring.profiles import (
    Item,
    Profile,
    ProfileError,
    default_dir,
    level_of,
    load_profile,
    load_profiles,
    parse_profile,
)
from collector.scoring.ranking import Ranked, rank_points
from collector.scoring.rules import CHECK_IDS, RuleError, parse_rule
from collector.scoring.sheets import ItemScore, ScoreSheet

__all__ = [
    "CHECK_IDS", "PROFILE_NAMES", "Item", "ItemScore", "Observation", "Profile", "ProfileError", "Ranked",
    "RuleError", "ScoreSheet", "default_dir", "level_of", "load_profile", "load_profiles", "max_age_for", "parse_profile",
    "parse_rule", "rank_points", "score_now", "score_period",
]
