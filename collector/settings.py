"""Collector settings: command-line flags, an optional YAML file (--config) and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class SettingsError(Exception):
    pass


@dataclass
class Settings:
    data_dir: Path = Path("pointwatch-data")
    database_url: str | None = None  # None: SQLite in data_dir (or POINTWATCH_DATABASE_URL)
    public_url: str = "http://127.0.0.1:8000"  # used in alert messages' links
    max_body_bytes: int = 1024 * 1024
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, config_file: str | None, data_dir: str | None) -> Settings:
        values: dict = {}
        if config_file:
            try:
                values = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise SettingsError(f"{config_file}: cannot read collector config: {exc}") from None
            if not isinstance(values, dict):
                raise SettingsError(f"{config_file}: expected a mapping at the top level")
        settings = cls()
        if data_dir or values.get("data_dir"):
            settings.data_dir = Path(data_dir or values["data_dir"])
        settings.database_url = os.environ.get("POINTWATCH_DATABASE_URL") or values.get("database_url")
        settings.public_url = str(values.get("public_url", settings.public_url)).rstrip("/")
        settings.extra = {k: v for k, v in values.items() if k not in ("data_dir", "database_url", "public_url")}
        from collector.ingest.admission import Admission, AdmissionConfigError

        try:  # checked at start: a typo here would otherwise show only under load
            Admission.from_config(settings.extra.get("ingest"))
        except AdmissionConfigError as exc:
            raise SettingsError(f"{config_file}: {exc}") from None
        settings.metrics_token()  # a missing or empty token file stops the start, not the first scrape
        settings.agent_releases()
        return settings

    def agent_releases(self):
        """The ``agent_releases`` section (collector/releases/config.py): release public keys, pause share."""
        from collector.releases.config import ReleaseConfigError, parse

        try:
            return parse(self.extra.get("agent_releases"))
        except ReleaseConfigError as exc:
            raise SettingsError(str(exc)) from None

    def metrics_token(self) -> str | None:
        """The bearer token /metrics requires (config ``metrics: {bearer_token_file: FILE}``), or None: open,
        as Prometheus inside the private network scrapes it by default."""
        section = self.extra.get("metrics") or {}
        if not isinstance(section, dict) or set(section) - {"bearer_token_file"}:
            raise SettingsError("metrics: the only key is bearer_token_file (a file holding the token "
                                "Prometheus sends with `authorization: {credentials_file: …}`)")
        path = section.get("bearer_token_file")
        if not path:
            return None
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"metrics.bearer_token_file {path}: {exc.strerror}") from None
        if len(token) < 16 or any(c.isspace() for c in token):
            raise SettingsError(f"metrics.bearer_token_file {path}: the token must be one word of at least "
                                "16 characters (e.g. `openssl rand -hex 32`)")
        return token

    def open_store(self, serving: bool = False):
        """The store, migrated. ``serving``: also hold its SQLite directory for this process (raises
        StoreError when another collector does)."""
        from collector.store import Store, StoreError, database_url, read_only_error

        if self.database_url:
            os.environ["POINTWATCH_DATABASE_URL"] = self.database_url
        store = Store(database_url(self.data_dir))
        try:
            if serving:
                store.hold_directory()
            store.create_schema()
            if serving:
                store.probe_write()
        except Exception as exc:
            store.close()
            if not serving or isinstance(exc, StoreError) or not read_only_error(exc):
                raise
            # A read-only store is a permanent fault to fix, not a 503 "try later" for ever.
            raise StoreError("read_only", f"the store ({store.sqlite_path or 'PostgreSQL'}) is read-only: "
                                          f"{str(getattr(exc, 'orig', exc)).strip()[:200]}; a collector must be "
                                          "able to write it (permissions, mount, or the server's "
                                          "default_transaction_read_only)") from None
        return store
