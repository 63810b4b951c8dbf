"""``pointwatch-collector evidence …``: export, verify, public-key."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("evidence", help="signed evidence bundles for reviewers")
    esub = p.add_subparsers(dest="action", required=True)
    a = esub.add_parser("export", help="write a signed evidence bundle (zip) for a point or a region")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--point", help="point code")
    who.add_argument("--region", help="region path: one sheet per point beneath it plus a summary")
    a.add_argument("--from", dest="since", required=True, help="first day (2026-01-01, Beijing time) or RFC 3339")
    a.add_argument("--to", dest="until", required=True, help="last day, included (or an RFC 3339 end, excluded)")
    a.add_argument("--out", required=True, help="the zip file to write")
    a = esub.add_parser("verify", help="check a bundle offline: signature, digests, hash chain")
    a.add_argument("file")
    a.add_argument("--public-key", help="the collector's public key (PEM or base64), as published")
    esub.add_parser("public-key", help="print this collector's evidence public key (PEM)")


def run(args, settings) -> int:
    from collector.evidence import keys

    if args.action == "verify":
        return _verify(args)
    try:
        key = keys.load_or_create(settings.data_dir)
    except keys.SigningKeyError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 1
    if args.action == "public-key":
        sys.stdout.write(keys.public_pem(key.public_key()))
        print(f"# key id {keys.key_id(key.public_key())}", file=sys.stderr)
        return 0
    return _export(args, settings, key)


def _export(args, settings, key) -> int:
    from collector import alerts
    from collector.evidence.bundle import ExportError, export
    from collector.evidence.period import PeriodError, parse_period
    from collector.registry.regions import RegionError, normalize_path

    try:
        period = parse_period(args.since, args.until)
        region = normalize_path(args.region) if args.region else None
    except (PeriodError, RegionError) as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    tmp = out.with_name(out.name + ".part")
    store = settings.open_store()
    try:
        with open(tmp, "wb") as fh:
            manifest = export(store, key, fh, period, codes=[args.point] if args.point else None, region=region,
                              actor=f"cli:{_user()}", source="cli", silence_intervals=alerts.silence_intervals(settings))
        os.replace(tmp, out)
    except ExportError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 1
    finally:
        tmp.unlink(missing_ok=True)
        store.close()
    reports = sum(p["chain"]["reports"] for p in manifest["points"])
    print(f"已导出 {out}：{len(manifest['points'])} 个服务点，{reports} 条报告，签名密钥 {manifest['signing_key']['key_id']}")
    for p in manifest["points"]:
        if not p["chain"]["intact"]:
            print(f"警告：服务点 {p['code']} 的报告哈希链有 {p['chain']['break_count']} 处断裂"
                  f"（已写入 manifest.json 和评分表）", file=sys.stderr)
    return 0


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "unknown"


def _verify(args) -> int:
    from collector.evidence.keys import SigningKeyError, key_id, load_public_file, parse_public
    from collector.evidence.verify import verify_bundle

    public_key = None
    if args.public_key:
        try:
            public_key = (load_public_file(args.public_key) if Path(args.public_key).exists()
                          else parse_public(args.public_key))
        except SigningKeyError as exc:
            print(f"错误：{exc}", file=sys.stderr)
            return 2
    v = verify_bundle(args.file, public_key)
    for note in v.notes:
        print(f"note: {note}")
    if v.ok and v.kind == "review":
        print(f"OK: review bundle: signature valid (key {key_id(public_key)}), {v.files} file digests match, "
              "automatic + manual = total")
        return 0
    if v.ok:
        print(f"OK: signature valid (key {key_id(public_key)}), {v.files} file digests match, hash chain intact "
              f"over {v.reports} reports")
        return 0
    for problem in v.problems:
        print(f"FAILED: {problem}")
    if v.untrusted:
        # Exit 3, not 0: consistent with itself is what any re-signed forgery is too.
        print(f"NOT VERIFIED: {v.untrusted}")
        print("未核验：未提供采集端公钥（--public-key），数据包内自带的公钥不能证明签名者")
        if not v.problems:
            return 3
    print(f"核验失败：{len(v.problems)} 处问题 (verification failed: {len(v.problems)} problem(s))")
    return 1
