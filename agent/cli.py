"""pointwatch-agent: `check` once by hand, `run` as the service, `enroll`, `status`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import unicodedata

from agent import __version__
from agent.confignode import ConfigError
from agent.vocabulary import STATUS_CN

STATUS_LABEL = STATUS_CN
EXIT_OK, EXIT_PROBLEM, EXIT_BAD_CONFIG = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    setup_console()
    parser = argparse.ArgumentParser(prog="pointwatch-agent", description="pointwatch service-point agent")
    parser.add_argument("--version", action="version", version=f"pointwatch-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="run every check once and print the results")
    p.add_argument("--config", required=True)
    p.add_argument("--json", action="store_true", help="print the JSON of the contract instead of a table")

    p = sub.add_parser("run", help="run as the service: check on schedule and report to the collector")
    p.add_argument("--config", required=True)

    p = sub.add_parser("enroll", help="trade a one-time enrolment code for this point's token")
    p.add_argument("--config", required=True)
    p.add_argument("--collector", help="collector URL (default: collector.url of the config)")
    p.add_argument("--code", required=True, help="one-time enrolment code from the county IT staff")
    p.add_argument("--accept-release-keys", default="", metavar="KEY_ID[,KEY_ID]",
                   help="replace the pinned release keys with the collector's, only if their ids are exactly these")

    p = sub.add_parser("status", help="jobs' last runs, outbox depth, last acknowledgement")
    p.add_argument("--config", default=default_config_path(),
                   help="default: $POINTWATCH_AGENT_CONFIG or the platform's standard path")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("service", help="Windows only: install/remove/start/stop the Windows service")
    p.add_argument("action", choices=("install", "update", "remove", "start", "stop", "restart"))
    p.add_argument("--config", help="config file the service runs with (install/update)")
    p.add_argument("--startup", default="auto", choices=("auto", "delayed", "manual", "disabled"))
    # The Windows service control manager starts the executable with this (hidden) command.
    sub.add_parser("service-host", help=argparse.SUPPRESS)
    # What the service's failure actions run during a self-upgrade's trial (agent/upgrade/recover.py).
    sub.add_parser("service-recover", help=argparse.SUPPRESS)

    args = parser.parse_args(argv)
    if args.command in ("service", "service-host", "service-recover"):
        return cmd_service(args)
    try:
        from agent import config as config_mod

        cfg = config_mod.load(args.config)
    except ConfigError as exc:
        print(f"配置错误 (config error): {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG

    if args.command == "check":
        return cmd_check(cfg, args.json)
    if args.command == "run":
        from agent.service import run_forever

        return run_forever(cfg)
    if args.command == "enroll":
        from agent.service import enroll

        accepted = {k.strip() for k in args.accept_release_keys.split(",") if k.strip()}
        return enroll(cfg, args.collector or cfg.collector.url, args.code, accepted)
    if args.command == "status":
        from agent.service import status

        return status(cfg, args.json)
    return EXIT_BAD_CONFIG


# Code pages that can show Chinese: a console set to one of them reads redirected output in it (`| more`).
CJK_CODE_PAGES = {936: "gbk", 54936: "gb18030", 950: "cp950"}


def console_encoding() -> str:
    """The encoding for output that is not written to a console window directly (a pipe or a file).

    UTF-8 unless the process's console uses a Chinese code page, whose programs (more, findstr) read it; a
    console in 437/1252/… cannot show Chinese in its own code page, so UTF-8 there too. Asked of the
    console through the API (GetConsoleOutputCP), never guessed from the locale; 0 means no console.
    """
    if sys.platform != "win32":
        return "utf-8"
    try:
        import ctypes

        cp = ctypes.WinDLL("kernel32").GetConsoleOutputCP()
    except (OSError, AttributeError):
        return "utf-8"
    return CJK_CODE_PAGES.get(cp, "utf-8")


def setup_console() -> None:
    """Make stdout and stderr print Chinese whatever the console's code page, and never crash on it.

    A console window is written through WriteConsoleW by Python itself (PEP 528), whatever its code page;
    redirected output got the ANSI code page (cp1252 on an English Windows) with strict errors — a crash —
    on stdout and ``\\u914d`` escapes on stderr. PYTHONIOENCODING, when set, is the user's choice.
    """
    import os

    if os.environ.get("PYTHONIOENCODING"):
        return
    encoding = console_encoding()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or not hasattr(stream, "reconfigure"):
            continue
        try:
            if sys.platform == "win32" and stream.isatty():
                stream.reconfigure(errors="replace")  # the console path: already Unicode
            elif sys.platform != "win32" and _can_encode(stream.encoding):
                continue  # a Linux terminal's own locale (UTF-8, or GB18030 on some Kylin setups)
            else:
                stream.reconfigure(encoding=encoding, errors="replace")
        except (OSError, ValueError):
            pass


def _can_encode(encoding: str | None) -> bool:
    try:
        "配置服务点".encode(encoding or "ascii")
        return True
    except (UnicodeError, LookupError):
        return False


# Where the installation guide (docs/zh/部署手册.md) puts the config; the collector's enrolment page names them.
LINUX_CONFIG = "/etc/pointwatch/agent.yaml"
WINDOWS_CONFIG = r"C:\ProgramData\pointwatch-agent\agent.yaml"


def default_config_path() -> str:
    import os

    if os.environ.get("POINTWATCH_AGENT_CONFIG"):
        return os.environ["POINTWATCH_AGENT_CONFIG"]
    if sys.platform == "win32":
        return os.path.join(os.environ.get("ProgramData", r"C:\ProgramData"), "pointwatch-agent", "agent.yaml")
    return LINUX_CONFIG


def cmd_service(args) -> int:
    if sys.platform != "win32":
        print("service 命令仅用于 Windows；Linux 请使用 configs/systemd/pointwatch-agent.service", file=sys.stderr)
        return EXIT_BAD_CONFIG
    from agent import winservice  # Windows-only module: imported only here, on Windows

    if args.command == "service-host":
        return winservice.host()
    if args.command == "service-recover":
        return winservice.recover()
    return winservice.handle(args.action, args.config, args.startup)


def cmd_check(cfg, as_json: bool) -> int:
    from agent.platform import current
    from agent.report import run_checks
    from agent.wire import result_to_dict, summarize

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    cfg = checked_against(cfg)
    results = run_checks(cfg, current())
    summary = summarize(results)
    if as_json:
        doc = {"point": {"code": cfg.point.code, "name": cfg.point.name},
               "results": [_contract_result(result_to_dict(r)) for r in results], "summary": summary}
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        print(format_table(cfg, results, summary))
    return EXIT_PROBLEM if summary["fail"] or summary["error"] else EXIT_OK


def checked_against(cfg):
    """What `check` runs: the verified cached policy when the state directory holds one (as `run` would), else
    the local file; said on stderr so that `--json` stays the contract's document."""
    from agent.enrol import State
    from agent.policyfetch import PolicyKeeper

    keeper = PolicyKeeper(cfg, State(cfg))
    keeper.load_cache()
    used = keeper.current()
    if used.policy_digest:
        print(f"按采集端下发的已校验策略检查：{used.policy_digest}（本机配置中的检查设置不生效）", file=sys.stderr)
    elif keeper.refused:
        print(f"已拒绝本地缓存的策略：{keeper.refused.message_cn}；按本机配置文件检查", file=sys.stderr)
    return used


def _contract_result(r: dict) -> dict:
    keys = ("check", "target", "status", "value", "unit", "message", "details")
    return {k: r.get(k) for k in keys} | {"observed_at": r.get("observed_at"), "duration_ms": r.get("duration_ms")}


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def format_value(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "seconds":
        return f"{value * 1000:.1f} ms"
    if unit == "ratio":
        return f"{value:.0%}"
    return f"{value:g}{(' ' + unit) if unit else ''}"


def format_table(cfg, results, summary) -> str:
    rows = [("状态", "检查项", "对象", "数值", "说明")]
    for r in results:
        rows.append((STATUS_LABEL[r.status], r.check, r.target, format_value(r.value, r.unit), r.message))
    widths = [max(_width(row[i]) for row in rows) for i in range(4)]
    lines = [f"服务点 {cfg.point.code} {cfg.point.name}"]
    for row in rows:
        lines.append("  ".join(_pad(row[i], widths[i]) for i in range(4)) + "  " + row[4])
    lines.append("合计：" + "，".join(f"{STATUS_LABEL[s]} {n}" for s, n in summary.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
