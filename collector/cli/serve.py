"""`pointwatch-collector serve`: the app under uvicorn, after the interpreter is tuned for it."""

from __future__ import annotations

import sys

from collector.settings import Settings


def serve(settings: Settings, host: str, port: int, app=None, access_log: bool = True,
          tls_cert: str | None = None, tls_key: str | None = None, forwarded_allow_ips: str | None = None) -> int:
    import uvicorn

    from collector.app import create_app
    from collector.cli import runtime

    runtime.tune()  # before the app starts its threads
    if app is None:
        from collector.store import StoreError

        try:
            store = settings.open_store(serving=True)
        except StoreError as exc:
            print(f"错误：{exc}", file=sys.stderr)
            return 1
        from collector.store import releasefiles

        # Release files an earlier version kept in this host's data dir go into the database before the first
        # download is answered (the migration cannot: it knows the database, not each host's data dir).
        releasefiles.import_files(store, settings.data_dir)
        app = create_app(settings, store=store)
    # Proxy headers are believed only from the proxies named: anyone else could claim "https" or any address
    # (and so dodge the per-source login throttle).
    proxied = {"proxy_headers": True, "forwarded_allow_ips": forwarded_allow_ips} if forwarded_allow_ips else {
        "proxy_headers": False}
    tls = {"ssl_certfile": tls_cert, "ssl_keyfile": tls_key} if tls_cert else {}
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log, **proxied, **tls)
    return 0
