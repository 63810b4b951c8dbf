"""pointwatch-collector: serve, demo, and the administration commands that work offline on the store."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from collector import __version__
from collector.settings import Settings, SettingsError


class CommandParser(argparse.ArgumentParser):
    """A parser that takes the global options (--config, --data-dir) itself, as does every subcommand's.

    ``add_subparsers`` builds subcommand parsers of its parser's class, so every command at every depth
    (``serve``, ``points add``, ``evidence export`` …) accepts them before or after its name and lists them
    in its --help. Their default is "not given" (SUPPRESS), so a subcommand's parser never overwrites a
    value given before it; :func:`main` reads them with getattr(..., None).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        group = self.add_argument_group("global options (before or after the command)")
        group.add_argument("--config", default=argparse.SUPPRESS, help="collector config file (YAML)")
        group.add_argument("--data-dir", default=argparse.SUPPRESS,
                           help="where the SQLite store and the signing key live (default ./pointwatch-data)")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="pointwatch-collector", description="pointwatch collector")
    parser.add_argument("--version", action="version", version=f"pointwatch-collector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the collector")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM, chain after it)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument("--forwarded-allow-ips", metavar="IPS", default=None,
                   help="trust X-Forwarded-For/-Proto from these proxy addresses (comma-separated; default: "
                        "trust no proxy). Only then is a request that reached the proxy over HTTPS treated as "
                        "HTTPS (Secure session cookies) and its client address taken from the header")

    p = sub.add_parser("demo", help="run the collector with a demo fleet and an agent checking this machine")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    from collector.cli import admin as registry_cli

    registry_cli.add_parsers(sub)  # db, points, users, tokens, enroll-code, audit

    p = sub.add_parser("scores", help="score points against their standards profiles")
    p.add_argument("--region", default="/", help="region path to rank (default: everything)")
    p.add_argument("--point", help="one point's sheet, item by item")
    p.add_argument("--from", dest="since", help="period start: a date (2026-01-01, Beijing time) or an RFC 3339 time")
    p.add_argument("--to", dest="until", help="period end: a date, included (2026-01-31), or an RFC 3339 time, excluded")
    p.add_argument("--json", action="store_true")

    from collector.cli.evidence import add_parser as add_evidence

    add_evidence(sub)
    from collector.cli.policy import add_parser as add_policy

    add_policy(sub)
    from collector.cli.releases import add_parser as add_releases

    add_releases(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations log each step at INFO on every start
    if args.command in ("serve", "demo"):  # a server's log lines, which its logging formats itself
        return _run(args)
    from collector.cli.output import terminal_guard

    with terminal_guard():
        return _run(args)


def _run(args) -> int:
    if args.command == "agent-release" and args.action in ("keygen", "sign"):
        from collector.cli.releases import run_offline

        return run_offline(args)  # on the offline machine: no collector config, no store
    try:
        settings = Settings.load(getattr(args, "config", None), getattr(args, "data_dir", None))
    except SettingsError as exc:
        print(f"配置错误 (config error): {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        if bool(args.tls_cert) != bool(args.tls_key):
            print("--tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        for path in filter(None, (args.tls_cert, args.tls_key)):
            if not os.path.isfile(path):
                print(f"{path}: no such file", file=sys.stderr)
                return 2
        from collector.cli.serve import serve

        return serve(settings, args.host, args.port, tls_cert=args.tls_cert, tls_key=args.tls_key,
                     forwarded_allow_ips=args.forwarded_allow_ips)
    if args.command == "evidence":
        from collector.cli.evidence import run as run_evidence

        return run_evidence(args, settings)
    if args.command == "policy":
        from collector.cli.policy import run as run_policy

        return run_policy(args, settings)
    if args.command == "agent-release":
        from collector.cli.releases import run as run_releases

        return run_releases(args, settings)
    if args.command == "demo":
        from collector.demo.run import run_demo

        return run_demo(settings, args.host, args.port)
    from collector.cli import admin as registry_cli

    if args.command == "scores":
        from collector import alerts
        from collector.cli.scores import run_scores

        store = settings.open_store()
        try:
            return run_scores(store, args, alerts.silence_intervals(settings))
        finally:
            store.close()
    return registry_cli.run(args, settings)
