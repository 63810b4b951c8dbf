"""``pointwatch-collector policy …``: set a region node's or a point's document, show a point's effective
policy (each setting annotated with the level that set it), the history of changes, and the signing keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from collector.cli.output import say


def add_parser(sub) -> None:
    p = sub.add_parser("policy", help="central policy: what each point is checked against")
    psub = p.add_subparsers(dest="action", required=True)
    a = psub.add_parser("set", help="set the policy document of a region node or a point (YAML, agent schema)")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--region", help="region path ('/' = the whole tree)")
    who.add_argument("--point", help="point code")
    a.add_argument("file", help="the document (YAML or JSON): intervals, core_network, isolation, usage, devices")
    a = psub.add_parser("show", help="a point's effective policy, each setting with the level that set it")
    a.add_argument("--point", required=True)
    a.add_argument("--json", action="store_true", help="the policy, its digest and each setting's origin as JSON")
    a = psub.add_parser("history", help="the changes to policy documents, newest first")
    a.add_argument("--region", default="/", help="only documents of this node and beneath it")
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a = psub.add_parser("keys", help="the keys that sign policies (and evidence): list, make the next, switch")
    a.add_argument("step", choices=("list", "next", "switch"),
                   help="next: make the next key, announced to agents in payloads the current key signs; "
                        "switch: sign with it from now on (refused while agents have not fetched since next)")
    a.add_argument("--force", action="store_true", help="switch even though some agents have not fetched")


def run(args, settings) -> int:
    from collector.cli.admin import _actor
    from collector.policy import service
    from collector.policy.documents import PolicyError, annotated_yaml

    if args.action == "keys":
        from collector.policy.keyring import run_keys

        return run_keys(args, settings)
    store = settings.open_store()
    try:
        if args.action == "set":
            try:
                text = Path(args.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                say("错误：无法读取 {}：{}", args.file, exc, err=True)
                return 2
            if args.region is not None:
                done = service.set_region(store, args.region, text, args.file, _actor())
            else:
                done = service.set_point(store, args.point, text, args.file, _actor())
            say("policy {}:{} version {}: {} settings changed, {} points issued", done["scope"], done["key"],
                done["version"], len(done["diff"]), done["points"])
            return 0
        if args.action == "show":
            eff = service.show_point(store, args.point)
            if eff is None:
                say("point {} has no policy: no document applies to it (its agent runs its local file)", args.point)
                return 1
            if args.json:
                print(json.dumps({"point": args.point, "digest": eff.digest, "policy": eff.policy,
                                  "origin": eff.origin}, ensure_ascii=False, indent=2))
            else:
                sys.stdout.write(annotated_yaml(eff, f"point {args.point}  digest {eff.digest}"))
            return 0
        from collector.store import policies

        rows = policies.history(store, args.region, args.limit)
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return 0
        for r in rows:
            say("{}\t{}:{}\tv{}\t{}", r["at"], r["scope"], r["key"], r["version"], r["by"])
            for d in r["diff"]:
                say("\t{}: {} -> {}", d["path"], json.dumps(d["before"], ensure_ascii=False),
                    json.dumps(d["after"], ensure_ascii=False))
        return 0
    except PolicyError as exc:
        say("错误（policy refused）：{}", exc, err=True)
        return 2 if exc.code == "invalid_policy" else 1
    finally:
        store.close()
