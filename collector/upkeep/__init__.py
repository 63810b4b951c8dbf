"""Upkeep of the store while a collector runs: SQLite WAL checkpoints, roll-ups and pruning."""
