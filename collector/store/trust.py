"""Which results rows are believed: an agent's result, or for the collector's own check ids only its own row.

Only the collector's own rows of its check ids (COLLECTOR_CHECK_IDS: the verdict rows collector/ingest/derive.py
writes, marked ``details.source = "collector"``) are read as the report's verdict or as the collector's
observations; ingest refuses those check ids from an agent, and a row that got in some other way (stored before
that refusal, say) is ignored rather than trusted."""

from __future__ import annotations

from sqlalchemy import or_

from agent.vocabulary import COLLECTOR_CHECK_IDS

COLLECTOR_SOURCE = "collector"  # details.source of every row collector/ingest/derive.py writes


def collectors_own(table):
    """A row of ``table`` (results, latest_results or an alias) the collector wrote itself."""
    return table.details["source"].as_string() == COLLECTOR_SOURCE


def trusted(table):
    """A row that is either an agent's result or, for the collector's check ids, the collector's own."""
    return or_(table.check.not_in(sorted(COLLECTOR_CHECK_IDS)), collectors_own(table))
