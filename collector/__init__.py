"""pointwatch collector: stores service points' reports, scores them, alerts, serves dashboards and metrics."""

__version__ = "0.1.0"
