"""The demo county of `make demo`: simulated agents over the real HTTP API, and the command that runs it."""
