"""What the alerts config and every notifier share: the config error, durations, one notifier's settings.

Kept apart from config.py because config.py builds the notifiers to validate them at load, and the
notifiers need these; with them here the imports run one way: configbase <- notifiers <- config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class AlertConfigError(ValueError):
    pass


@dataclass
class NotifierConfig:
    name: str
    type: str
    options: dict
    regions: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    send_resolved: bool = True
    timeout_s: float = 10.0
    max_attempts: int = 8
    backoff_s: float = 2.0  # first retry delay; doubles up to backoff_max_s
    backoff_max_s: float = 600.0


_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def duration(value, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DUR.match(str(value))
    if not match:
        raise AlertConfigError(f"alerts.{where}: '{value}' is not a duration (e.g. 30s, 5m, 1h)")
    return float(match.group(1)) * _UNIT[match.group(2)]
