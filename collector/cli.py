"""pointwatch-collector: serve, demo, and the administration commands that work offline on the store."""

from __future__ import annotations

import argparse
import logging
import sys

from collector import __version__
from collector.settings import Settings, SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pointwatch-collector", description="pointwatch collector")
    parser.add_argument("--version", action="version", version=f"pointwatch-collector {__version__}")
    parser.add_argument("--config", help="collector config file (YAML)")
    parser.add_argument("--data-dir", help="where the SQLite store and the signing key live (default ./pointwatch-data)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the collector")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    p = sub.add_parser("demo", help="run the collector with a demo fleet and an agent checking this machine")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    p = sub.add_parser("points", help="the point registry")
    psub = p.add_subparsers(dest="action", required=True)
    a = psub.add_parser("add", help="register one point")
    a.add_argument("--code", required=True)
    a.add_argument("--name", required=True)
    a.add_argument("--region", required=True, help="region path, e.g. 甘肃省/兰州市/城关区/某镇/某村")
    a.add_argument("--profile", default="national-basic")

    p = sub.add_parser("tokens", help="API tokens")
    tsub = p.add_subparsers(dest="action", required=True)
    a = tsub.add_parser("create", help="create a token and print it (it is stored only as a hash)")
    a.add_argument("--role", required=True, choices=("agent", "viewer", "reviewer", "admin"))
    a.add_argument("--region", default="/", help="region path the token is confined to ('/' = all)")
    a.add_argument("--point", help="for --role agent: the point it reports for")
    a.add_argument("--description")

    p = sub.add_parser("enroll-code", help="one-time enrolment codes for agents")
    esub = p.add_subparsers(dest="action", required=True)
    a = esub.add_parser("create")
    a.add_argument("--point", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.load(args.config, args.data_dir)
    except SettingsError as exc:
        print(f"配置错误 (config error): {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings, args.host, args.port)
    if args.command == "demo":
        from collector.demo import run_demo

        return run_demo(settings, args.host, args.port)
    from collector.store import StoreError

    store = settings.open_store()
    try:
        if args.command == "points" and args.action == "add":
            store.upsert_point(args.code, args.name, args.region, args.profile)
            print(f"服务点 {args.code} 已登记")
        elif args.command == "tokens":
            print(store.create_token(args.role, args.region, args.point, description=args.description))
        elif args.command == "enroll-code":
            print(store.create_enroll_code(args.point))
    except StoreError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def serve(settings: Settings, host: str, port: int, app=None, access_log: bool = True) -> int:
    import uvicorn

    from collector.app import create_app

    app = app or create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, access_log=access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
