"""The ``agent_releases`` section of collector.yaml: the release public keys the collector trusts, and when
the collector pauses a release in a rollout stage by itself (the failed share, and the fewest failed points)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from agent import ed25519
from agent.policy import Key, key_id_of

DEFAULT_PAUSE_FAILED_SHARE = 0.2
# A stage pauses only when this many distinct points failed: each point writes its own failure reports, so
# fewer must never be able to stop a stage's rollout (a stage of one point never pauses by itself).
DEFAULT_PAUSE_MIN_FAILED_POINTS = 3
KEYS = ("public_keys", "pause_failed_share", "pause_min_failed_points")


class ReleaseConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ReleaseSettings:
    public_keys: list[Key] = field(default_factory=list)
    pause_failed_share: float = DEFAULT_PAUSE_FAILED_SHARE
    pause_min_failed_points: int = DEFAULT_PAUSE_MIN_FAILED_POINTS

    def key_objects(self) -> list[dict]:
        return [k.to_json() for k in self.public_keys]


def parse(section) -> ReleaseSettings:
    if section is None:
        return ReleaseSettings()
    if not isinstance(section, dict) or set(section) - set(KEYS):
        raise ReleaseConfigError(f"agent_releases: a mapping of {', '.join(KEYS)}")
    keys = []
    items = section.get("public_keys") or []
    if not isinstance(items, list):
        raise ReleaseConfigError("agent_releases.public_keys: a list of base64 Ed25519 public keys "
                                 "(what `agent-release keygen` prints)")
    for i, text in enumerate(items):
        try:
            raw = base64.b64decode(str(text), validate=True)
        except (binascii.Error, ValueError):
            raise ReleaseConfigError(f"agent_releases.public_keys[{i}]: not base64") from None
        if len(raw) != 32 or not ed25519.valid_public_key(raw):
            raise ReleaseConfigError(f"agent_releases.public_keys[{i}]: not an Ed25519 public key (32 bytes)")
        keys.append(Key(key_id_of(raw), raw))
    share = section.get("pause_failed_share", DEFAULT_PAUSE_FAILED_SHARE)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ReleaseConfigError(f"agent_releases.pause_failed_share: a number from 0 to 1 (got {share!r}); a "
                                 "stage is paused when more than this share of its points failed")
    least = section.get("pause_min_failed_points", DEFAULT_PAUSE_MIN_FAILED_POINTS)
    if isinstance(least, bool) or not isinstance(least, int) or not 1 <= least <= 100000:
        raise ReleaseConfigError(f"agent_releases.pause_min_failed_points: a whole number from 1 to 100000 (got "
                                 f"{least!r}); a stage is paused only when at least this many distinct points "
                                 "failed for a build fault")
    return ReleaseSettings(keys, float(share), least)
