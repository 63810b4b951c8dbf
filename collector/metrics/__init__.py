"""Prometheus text: the fleet's series (render) and the collector's own (selfmetrics)."""
