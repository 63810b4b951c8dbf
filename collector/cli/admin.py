"""The offline administration commands: db, points, users, tokens, enroll-code, audit.

They work on the store directly (no running collector needed) and are audited as ``cli:<OS user>`` from
this host.
"""

from __future__ import annotations

import getpass
import socket
import sys

from agent.vocabulary import DEFAULT_PROFILE, READ_ROLES, ROLES
from collector.accounts import users
from collector.cli.output import row, say
from collector.registry import importing
from collector.store import audit, enrolment, people
from collector.store import points as points_repo
from collector.store import registry as registry_repo


def add_parsers(sub) -> None:
    p = sub.add_parser("db", help="the store's schema")
    dsub = p.add_subparsers(dest="action", required=True)
    dsub.add_parser("upgrade", help="apply pending migrations (serve does this by itself on start)")
    dsub.add_parser("current", help="print the schema revision")

    p = sub.add_parser("points", help="the point registry")
    psub = p.add_subparsers(dest="action", required=True)
    a = psub.add_parser("add", help="register one point")
    a.add_argument("--code", required=True)
    a.add_argument("--name", required=True)
    a.add_argument("--region", required=True, help="region path, e.g. 甘肃省/兰州市/城关区/某镇/某村")
    a.add_argument("--profile", default=DEFAULT_PROFILE)
    a.add_argument("--address")
    a = psub.add_parser("import", help="import points from CSV or XLSX (code,name,region,profile[,address,"
                                       "expected_devices,report_interval_s,device_kind,device_name,device_address,"
                                       "device_method]); all rows or none")
    a.add_argument("file")
    a.add_argument("--dry-run", action="store_true", help="check the file, write nothing")
    a = psub.add_parser("export", help="export the registry to XLSX (the columns import reads)")
    a.add_argument("--out", required=True)
    a.add_argument("--region", default="/")

    p = sub.add_parser("users", help="web users")
    usub = p.add_subparsers(dest="action", required=True)
    a = usub.add_parser("create", help="create a user (password from a prompt or --password-stdin)")
    a.add_argument("--username", required=True)
    a.add_argument("--role", required=True, choices=READ_ROLES)  # people; agents get tokens, not accounts
    a.add_argument("--region", default="/", help="region path the user is confined to ('/' = all)")
    a.add_argument("--person", required=True, help="the person behind the account (a real name); one person "
                                                   "cannot be admin and reviewer of overlapping regions")
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    usub.add_parser("list")
    for action, words in (("disable", "disable a user: its sessions end and its tokens are revoked at once"),
                          ("enable", "enable a disabled user again (it logs in anew)"),
                          ("reset-password", "set a new password (prompt or --password-stdin); sessions end"),
                          ("end-sessions", "log a user out everywhere")):
        a = usub.add_parser(action, help=words)
        a.add_argument("username")
        if action == "reset-password":
            a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    p = sub.add_parser("tokens", help="API tokens")
    tsub = p.add_subparsers(dest="action", required=True)
    a = tsub.add_parser("create", help="create a token and print it (it is stored only as a hash)")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--region", default="/", help="region path the token is confined to ('/' = all)")
    a.add_argument("--point", help="for --role agent: the point it reports for")
    a.add_argument("--description")
    a.add_argument("--person", help="the person the token acts for (required but for --role agent; "
                                    "checked against the duty split)")
    tsub.add_parser("list", help="every token's id, role, region, point and state (never the token itself)")
    a = tsub.add_parser("revoke", help="revoke a token: at once here, within 60 s on running collectors")
    a.add_argument("id", type=int, help="the token's id, from `tokens list`")

    p = sub.add_parser("enroll-code", help="one-time enrolment codes for agents")
    esub = p.add_subparsers(dest="action", required=True)
    a = esub.add_parser("create")
    a.add_argument("--point", required=True)

    p = sub.add_parser("audit", help="the audit log")
    asub = p.add_subparsers(dest="action", required=True)
    asub.add_parser("verify", help="walk the hash chain; exit 1 if an entry was edited, removed or inserted")


COMMANDS = ("db", "points", "users", "tokens", "enroll-code", "audit")


def run(args, settings) -> int:
    from collector.store import Store, StoreError, database_url

    actor = _actor()
    if args.command == "db":
        if settings.database_url:
            import os

            os.environ["POINTWATCH_DATABASE_URL"] = settings.database_url
        store = Store(database_url(settings.data_dir))
        try:
            from collector.store.migrate import current_revision

            if args.action == "current":
                print(current_revision(store.engine) or "(empty)")
            else:
                before, after = store.upgrade()
                print(f"schema: {before or '(empty)'} -> {after}")
        finally:
            store.close()
        return 0
    store = settings.open_store()
    try:
        return _run(args, store, actor)
    except StoreError as exc:
        say("错误：{}", exc, err=True)
        return 1
    finally:
        store.close()


def _actor():
    from collector.store.audit import Actor

    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers): still say it came from the command line
        user = "unknown"
    return Actor(f"cli:{user}", socket.gethostname())


def _run(args, store, actor) -> int:
    from collector.registry import spreadsheet as registry

    if args.command == "points" and args.action == "add":
        from collector.cleantext import needs_cleaning
        from collector.store import StoreError

        if any(needs_cleaning(v) for v in (args.code, args.name, args.address)):
            raise StoreError("bad_text", "服务点编码、名称和地址不能" + registry.HIDDEN_CN.replace("，请删除后重新导入", ""))
        points_repo.upsert_point(store, args.code, args.name, args.region, args.profile, address=args.address, actor=actor)
        from collector.policy import service as policy_service

        policy_service.reissue(store, [args.code])  # its region's policy applies from now (a moved point's too)
        print(f"服务点 {args.code} 已登记")
    elif args.command == "points" and args.action == "import":
        try:
            points = registry.load_points(args.file)
            if args.dry_run:
                print(f"检查通过：{len(points)} 行，未写入（--dry-run）")
                return 0
            counts = importing.import_points(store, points, actor, source_name=args.file)
        except registry.ImportError_ as exc:
            print(f"导入失败，未写入任何数据（{len(exc.problems)} 处问题）：", file=sys.stderr)
            for problem in exc.problems:
                say("  {}", problem, err=True)
            return 1
        except OSError as exc:
            print(f"错误：无法读取 {args.file}：{exc}", file=sys.stderr)
            return 1
        print(f"导入完成：{counts['rows']} 行，新增 {counts['created']}，更新 {counts['updated']}")
    elif args.command == "points" and args.action == "export":
        points = registry_repo.export_points(store, args.region, actor=actor, target=args.out)
        registry.write_xlsx(points, args.out)
        print(f"已导出 {len(points)} 个服务点到 {args.out}")
    elif args.command == "users" and args.action == "create":
        password = _read_password(args.password_stdin)
        users.create_user(store, args.username, password, args.role, args.region, args.person, actor=actor)
        print(f"用户 {args.username}（{args.role}，{args.region}）已创建")
    elif args.command == "users" and args.action == "list":
        for u in people.list_users(store):
            row(u["username"], u["role"], u["region"], u["person"], "停用" if u["disabled"] else "启用")
    elif args.command == "users":
        return _user_action(args, store, actor)
    elif args.command == "tokens" and args.action == "create":
        print(users.create_token(store, args.role, args.region, args.point, description=args.description,
                                 person=args.person, actor=actor))
    elif args.command == "tokens" and args.action == "list":
        from collector.timeutil import china_time

        for t in people.list_tokens(store):
            row(t["id"], t["role"], t["region"], t["point"] or "-", t["person"] or "-",
                china_time(t["created_at"], "%Y-%m-%d"), "已吊销" if t["revoked"] else "有效", t["description"] or "")
    elif args.command == "tokens" and args.action == "revoke":
        t = users.revoke_token(store, args.id, actor=actor)
        print(f"令牌 {t['id']}（{t['role']}，{t['point'] or t['region']}）已吊销；运行中的采集端在 60 秒内生效")
    elif args.command == "enroll-code":
        print(enrolment.create_enroll_code(store, args.point, actor=actor))
    elif args.command == "audit":
        check = audit.verify_audit(store)
        if check.ok:
            print(f"审计日志完整：{check.entries} 条")
            return 0
        print(f"审计日志已被篡改：第 {check.first_bad_id} 条（前 {check.entries} 条完好）：{check.problem}",
              file=sys.stderr)
        return 1
    return 0


def _user_action(args, store, actor) -> int:
    name = args.username
    if args.action == "disable":
        done = users.set_disabled(store, name, True, actor)
        say("用户 {} 已停用：结束 {} 个会话，吊销 {} 个令牌（运行中的采集端在 60 秒内拒绝这些令牌）", name,
            done["sessions_ended"], len(done["tokens_revoked"]))
    elif args.action == "enable":
        users.set_disabled(store, name, False, actor)
        say("用户 {} 已启用（原会话和令牌不会恢复）", name)
    elif args.action == "reset-password":
        ended = users.set_password(store, name, _read_password(args.password_stdin), actor)
        say("用户 {} 的密码已重置，结束 {} 个会话", name, ended)
    elif args.action == "end-sessions":
        say("用户 {} 的 {} 个会话已全部结束", name, users.end_sessions(store, name, actor))
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("密码：")
    if getpass.getpass("再次输入密码：") != first:
        from collector.store import StoreError

        raise StoreError("password_mismatch", "两次输入的密码不一致")
    return first
