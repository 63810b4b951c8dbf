"""Which family modules exist, which config section each reads, and which scheduler job runs each.

Family modules are imported here, and each keeps its heavy imports (pysnmp, …) inside the functions that
need them, so loading the registry stays cheap on an old PC.
"""

from __future__ import annotations

from types import ModuleType

from agent.checks import devices, host, identity, isolation, network, usage

# Scheduler job -> the family modules it runs; job names are the keys of the config's `intervals`.
JOBS: dict[str, tuple[ModuleType, ...]] = {
    "network": (network,),
    "devices": (devices,),
    "compliance": (isolation, usage),
    "identity": (identity, host),
}

# Config section -> the function that validates it (None when the section is absent).
SECTION_PARSERS = {
    "core_network": network.parse_config,
    "isolation": isolation.parse_config,
    "usage": usage.parse_config,
    "devices": devices.parse_config,
}


def all_families() -> list[ModuleType]:
    return [m for mods in JOBS.values() for m in mods]


def known_check_ids(config=None) -> set[str]:
    ids: set[str] = set()
    for family in all_families():
        ids.update(family.CHECK_IDS)
    return ids
