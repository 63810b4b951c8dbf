"""What every net.core probe reads besides its target: the family's settings from ``core_network``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NetSettings:
    timeout: float = 1.0
    count: int = 3
    loss_warn: float = 0.2
    rtt_warn: float = 0.2  # seconds; a village line slower than this on average is degraded
    ca_bundle: str | None = None  # the private network's own CA (PEM) for net.core.https
