"""Did a documentation move lose a fact? Every code span, command line and number of OLD must still appear
in README.md or docs/ (the new home of what the README said).

    git show 1eba14e:README.md > /tmp/old-README.md
    .venv/bin/python docs/check_facts.py /tmp/old-README.md      # prints what is missing, exit 1 if anything

Whitespace is collapsed before comparing; numbers are compared as written ("120,000", "8.4", "0600").
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def facts(text: str) -> dict[str, set[str]]:
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    commands = {re.sub(r"\s+#.*$", "", line).strip() for b in blocks for line in b.splitlines()}
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    spans = set(re.findall(r"`([^`\n]+)`", prose))
    bare = re.sub(r"`[^`\n]+`", "", prose)
    numbers = set(re.findall(r"(?<![\w.,])\d+(?:,\d{3})*(?:\.\d+)?(?![\w.])", bare))
    return {"command": {c for c in commands if c}, "code": spans, "number": numbers}


def corpus() -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return re.sub(r"\s+", " ", "\n".join(p.read_text(encoding="utf-8") for p in pages))


def missing(old_text: str) -> list[tuple[str, str]]:
    text = corpus()
    out = []
    for kind, items in facts(old_text).items():
        for item in sorted(items):
            if re.sub(r"\s+", " ", item) not in text:
                out.append((kind, item))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    lost = missing(Path(argv[0]).read_text(encoding="utf-8"))
    for kind, item in lost:
        print(f"{kind:8} {item}")
    print(f"{len(lost)} fact(s) of {argv[0]} not found in README.md or docs/")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
