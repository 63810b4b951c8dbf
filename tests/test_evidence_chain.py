"""The hash chain walk (collector/evidence/chain.py) that both the export and ``verify`` use, held to what
docs/en/operations.md and docs/zh/评审取证.md state: each report's ``digest`` is sha256 over the previous
report's digest, a newline and its canonical body; its ``prev_digest`` is the previous report's digest;
the chain's tail is the first report's ``prev_digest``, its head the last report's digest; a break names
its line, report id and kind (``link``: removed, inserted or reordered; ``edited``: changed after it was
stored), the first 100 of them by name and the rest counted.

The digests are computed here from that formula with hashlib, never with chain_digest itself.
"""

from __future__ import annotations

import hashlib

from collector.evidence.chain import EDITED, LINK, ChainWalk, chain_digest

GENESIS = "0" * 64


def sha(prev: str, body: str) -> str:
    return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()


def chain(bodies, prev=GENESIS):
    rows = []
    for n, body in enumerate(bodies, start=1):
        digest = sha(prev, body)
        rows.append((n, f"r{n}", prev, digest, body))
        prev = digest
    return rows


def walk(rows) -> ChainWalk:
    w = ChainWalk()
    for row in rows:
        w.feed(*row)
    return w


def test_the_digest_is_sha256_of_the_previous_digest_a_newline_and_the_body():
    assert chain_digest("", "") == hashlib.sha256(b"\n").hexdigest()
    assert chain_digest(GENESIS, '{"seq":1}') == hashlib.sha256(f'{GENESIS}\n{{"seq":1}}'.encode()).hexdigest()
    assert chain_digest("a", "某村") == hashlib.sha256("a\n某村".encode()).hexdigest()  # UTF-8


def test_an_intact_chain_has_its_tail_head_and_count():
    rows = chain(['{"seq":1}', '{"seq":2}', '{"seq":3}'], prev="f" * 64)
    summary = walk(rows).summary()
    assert summary == {"reports": 3, "tail": "f" * 64, "head": rows[-1][3], "intact": True,
                       "break_count": 0, "breaks": []}


def test_an_empty_chain_is_intact_with_neither_end():
    assert ChainWalk().summary() == {"reports": 0, "tail": None, "head": None, "intact": True,
                                     "break_count": 0, "breaks": []}


def test_a_removed_report_breaks_the_link_at_the_next_line():
    rows = chain(['{"seq":1}', '{"seq":2}', '{"seq":3}'])
    w = walk([rows[0], (2, *rows[2][1:])])  # report 2 gone; report 3 now on line 2
    assert not w.intact and w.break_count == 1
    assert w.breaks == [{"line": 2, "report_id": "r3", "kind": "link", "problem": LINK}]
    assert w.summary()["head"] == rows[2][3] and w.summary()["reports"] == 2


def test_an_edited_report_breaks_as_edited_and_its_digest_still_links_the_next():
    rows = chain(['{"seq":1}', '{"seq":2}', '{"seq":3}'])
    n, rid, prev, digest, _ = rows[1]
    w = walk([rows[0], (n, rid, prev, digest, '{"seq":2,"x":1}'), rows[2]])
    assert w.breaks == [{"line": 2, "report_id": "r2", "kind": "edited", "problem": EDITED}]
    assert w.break_count == 1 and w.summary()["intact"] is False


def test_an_inserted_report_breaks_both_ways():
    rows = chain(['{"seq":1}', '{"seq":2}'])
    forged = (2, "forged", GENESIS, "e" * 64, '{"seq":9}')
    w = walk([rows[0], forged, (3, *rows[1][1:])])
    assert [(b["line"], b["kind"]) for b in w.breaks] == [(2, "link"), (2, "edited"), (3, "link")]
    assert w.break_count == 3


def test_the_first_100_breaks_are_named_and_the_rest_counted():
    bodies = [f'{{"seq":{n}}}' for n in range(1, 152)]
    rows = chain(bodies)
    w = walk([(n, rid, prev, digest, body + " ") for n, rid, prev, digest, body in rows])  # every one edited
    assert w.break_count == 151 and len(w.breaks) == 100
    assert w.breaks[0]["line"] == 1 and w.breaks[-1]["line"] == 100
    assert w.summary()["break_count"] == 151 and len(w.summary()["breaks"]) == 100
    w.summary()["breaks"].clear()  # the summary is a copy
    assert len(w.breaks) == 100
