"""``pointwatch-collector agent-release …``: the release key and signing (offline, no store, no collector
config), and adding, listing, pausing and resuming the releases the collector serves to agents."""

from __future__ import annotations

import json
from pathlib import Path

from collector.cli.output import row, say

OFFLINE = ("keygen", "sign")


def add_parser(sub) -> None:
    p = sub.add_parser("agent-release", help="agent releases: the offline release key, signing, adding, rollout")
    rsub = p.add_subparsers(dest="action", required=True)
    a = rsub.add_parser("keygen", help="make an Ed25519 release key (offline machine; file 0600) and print its "
                                       "public key for collector.yaml agent_releases.public_keys")
    a.add_argument("--out", required=True, metavar="FILE.pem")
    a = rsub.add_parser("sign", help="sign a release file with the release key (offline): writes its manifest")
    a.add_argument("file")
    a.add_argument("--version", required=True, dest="release_version", metavar="V")
    a.add_argument("--platform", required=True, metavar="P")
    a.add_argument("--key", required=True, metavar="FILE.pem")
    a.add_argument("--out", metavar="M", help="the manifest (default FILE.release.json)")
    a = rsub.add_parser("add", help="verify a signed release against the configured release keys and hold it")
    a.add_argument("file")
    a.add_argument("--version", required=True, dest="release_version", metavar="V")
    a.add_argument("--platform", required=True, metavar="P")
    a.add_argument("--manifest", metavar="M", help="the signed manifest (default FILE.release.json)")
    a.add_argument("--replace", action="store_true", help="replace the file held for this version and platform")
    a = rsub.add_parser("list", help="the releases held: per version how many points run it, failed, and why")
    a.add_argument("--json", action="store_true")
    a = rsub.add_parser("pause", help="stop serving a version in every stage (agents are answered 409 and do not "
                                      "start it)")
    a.add_argument("release_version", metavar="V")
    a = rsub.add_parser("resume", help="serve a paused version again: the admin's pause and every stage the "
                                       "collector paused, or with --stage only that stage")
    a.add_argument("release_version", metavar="V")
    a.add_argument("--stage", metavar="STAGE", help="one stage the collector paused (as `agent-release list` names it)")


def run_offline(args) -> int:
    from collector.releases import manifest as mf

    try:
        if args.action == "keygen":
            try:
                key = mf.keygen(args.out)
            except FileExistsError:
                say("错误：{} 已存在，不会覆盖已有的密钥", args.out, err=True)
                return 2
            except OSError as exc:
                say("错误：无法写入 {}：{}", args.out, exc.strerror, err=True)
                return 2
            say("发布私钥已写入 {}（仅本人可读）。请离线保管，不要复制到采集端。", args.out)
            say("公钥（填入采集端 collector.yaml 的 agent_releases.public_keys）：{}", key["public_key"])
            print(json.dumps(key, ensure_ascii=False))
            return 0
        out = args.out or f"{args.file}.release.json"
        envelope = mf.sign(args.file, args.release_version, args.platform, mf.load_private(args.key))
        Path(out).write_bytes(envelope)
        say("已签名 {}（版本 {}，平台 {}）：发布清单 {}", args.file, args.release_version, args.platform, out)
        return 0
    except mf.ReleaseRefused as exc:
        say("错误：{}", exc, err=True)
        return 2
    except OSError as exc:
        say("错误：无法读取 {}：{}", exc.filename or args.file, exc.strerror, err=True)
        return 2


def run(args, settings) -> int:
    from collector.cli.admin import _actor
    from collector.releases import manifest as mf
    from collector.releases import rollout, service

    store = settings.open_store()
    try:
        if args.action == "add":
            try:
                added = service.add(store, settings.data_dir, settings.agent_releases(), args.file,
                                    args.release_version, args.platform, args.manifest, _actor(), args.replace)
            except mf.ReleaseRefused as exc:
                say("拒绝添加（{}）：{}", exc.reason, exc, err=True)
                return 2
            signed = added.signed
            words = {"added": "已添加", "replaced": "已替换", "unchanged": "已存在（同一文件），未改动"}[added.outcome]
            say("{} 版本 {}（{}）：{}，{} 字节，sha256 {}，签名密钥 {}", words, signed.version, signed.platform,
                signed.file, signed.size, signed.sha256, signed.key_id)
            if added.outcome == "replaced":
                say("新文件是另一个构建：此前各服务点对旧构建的失败不计入新构建；曾在旧构建上失败的服务点会重新尝试新构建。")
                if added.stages_resumed:
                    say("采集端因旧构建失败而自动暂停的阶段已恢复发布：{}", "、".join(added.stages_resumed))
            if added.still_paused:
                say("注意：版本 {} 仍处于手动暂停状态，确认新构建无误后请执行 agent-release resume {}", signed.version,
                    signed.version)
            return 0
        if args.action == "pause":
            if not service.pause(store, args.release_version, _actor()):
                say("版本 {} 不存在或已暂停", args.release_version, err=True)
                return 1
            say("版本 {} 已暂停发布（所有阶段）", args.release_version)
            return 0
        if args.action == "resume":
            lifted = service.resume(store, args.release_version, _actor(), args.stage)
            if not lifted:
                say("版本 {} {}", args.release_version,
                    f"在阶段 {args.stage} 未暂停" if args.stage else "不存在或未暂停", err=True)
                return 1
            names = ["手动暂停（所有阶段）" if x == "*" else f"阶段 {x}" for x in lifted]
            say("版本 {} 已恢复发布：{}", args.release_version, "、".join(names))
            return 0
        view = rollout.stats(store)
        if args.json:
            print(json.dumps(view, ensure_ascii=False, indent=2, default=str))
            return 0
        row("版本", "平台", "运行中", "失败", "失败原因", "状态")
        for r in view["releases"]:
            state = f"已暂停（所有阶段）：{r['paused_reason']}" if r["paused_at"] else ("发布中" if r["held"] else "未持有")
            if r["paused_stages"] and not r["paused_at"]:
                state += f"（{len(r['paused_stages'])} 个阶段已自动暂停）"
            row(r["version"], ",".join(p["platform"] for p in r["platforms"]) or "-", r["running"], r["failed"],
                ", ".join(f"{k}×{n}" for k, n in r["reasons"].items()) or "-", state)
            for st in r["stages"]:
                row("", f"阶段 {st['stage']}", st["points"], st["failed"], f"{st['share']:.0%}",
                    f"本阶段已自动暂停：{st['paused_reason']}" if st["paused_at"] else "")
        return 0
    finally:
        store.close()

