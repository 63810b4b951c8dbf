"""Reviews as the API and the pages use them: open (freeze the automatic part), enter, attach, submit, read.

Only the reviewer who opened a review enters its items, attaches its files and submits it: the signature
says who reviewed, so nobody else may write under that name. Admins read reviews (the routes admit them to
reads only); nobody changes a submitted one. A review opened for a point and period that already has a
submitted review is a correction of the current one (``replaces``); both are kept, the newer is current.
"""

from __future__ import annotations

from datetime import datetime, timezone

from collector.evidence.chain import ChainWalk
from collector.evidence.period import Period, iso
from collector.review import files, lines
from collector.scoring import scores
from collector.store import StoreError, TokenInfo, queries
from collector.store import reviews as repo
from collector.store.audit import Actor

SUBMIT_TRIES = 3


class ReviewError(Exception):
    """A request about a review that cannot be done: ``status`` is the HTTP answer, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def identity_of(info: TokenInfo, actor: Actor) -> dict:
    """The reviewer as authenticated: what the signed manifest names."""
    return {"actor": actor.name, "person": info.person, "role": info.role, "region": info.region_path,
            "via": info.via}


def freeze(store, code: str, period: Period, silence_intervals: int) -> dict:
    """The automatic part as computed now: the monitor's sheet for the period and the reports' chain digests."""
    reg = queries.point_registration(store, code)
    if reg is None:
        raise ReviewError(404, f"no point with code '{code}'")
    try:
        sheet = scores.point_sheet(store, code, period.start, period.end, silence_intervals=silence_intervals)
        scoring = scores.profile_for(reg["profile"]).scoring
    except scores.ScoreError as exc:
        raise ReviewError(422, str(exc)) from None
    walk = ChainWalk()
    for n, (rid, _at, prev, digest, body, _host) in enumerate(
            queries.stream_report_rows(store, code, period.start, period.end), start=1):
        walk.feed(n, rid, prev, digest, body)
    return {"sheet": {**sheet.as_dict(), "scoring": scoring}, "chain": walk.summary(),
            "computed_at": iso(datetime.now(timezone.utc)), "period": period.as_json(),
            "point": {"code": code, "name": reg["name"], "region": reg["region"], "profile": reg["profile"]}}


def open_review(store, info: TokenInfo, actor: Actor, code: str, period: Period, silence_intervals: int,
                replaces: int | None = None) -> tuple[int, bool]:
    """(review id, created): the reviewer's own open draft for the point and period is resumed, not doubled."""
    draft = repo.open_draft(store, code, period.start, period.end, actor.name)
    if draft is not None and replaces is None:
        return draft, False
    current = repo.current_id(store, code, period.start, period.end)
    if replaces is not None and replaces != current:
        raise ReviewError(409, f"review {replaces} is not the current review of point {code} for this period"
                               + (f" (review {current} is)" if current else " (there is none)"))
    old = repo.get(store, current) if current is not None else None
    frozen = freeze(store, code, period, silence_intervals)
    point = frozen["point"]
    rid = repo.create(store, actor, point_code=code, region_path=point["region"], profile=point["profile"],
                      start=period.start, end=period.end, given_from=period.given_from, given_to=period.given_to,
                      identity=identity_of(info, actor), frozen=frozen, replaces_id=current,
                      replaces_reviewer=old.reviewer if old else None)
    return rid, True


def _own_draft(store, actor: Actor, review_id: int) -> repo.ReviewRecord:
    rec = repo.get(store, review_id)
    if rec is None:
        raise ReviewError(404, f"no review {review_id}")
    if rec.reviewer != actor.name:
        raise ReviewError(403, f"review {review_id} is {rec.reviewer}'s: only the reviewer who opened it enters "
                               "its items (open a correction of your own once it is submitted)")
    if rec.state != repo.DRAFT:
        raise ReviewError(409, f"review {review_id} was submitted and cannot change; open a correction")
    return rec


def _store_call(fn, *args):
    try:
        return fn(*args)
    except StoreError as exc:
        status = {"submitted": 409, "no_review": 404, "too_many": 422, "blob_changed": 500}.get(exc.code, 422)
        raise ReviewError(status, str(exc)) from None


def enter(store, actor: Actor, review_id: int, item_id: str, body: dict) -> dict:
    rec = _own_draft(store, actor, review_id)
    try:
        entry = lines.validate(rec.frozen, item_id, body.get("score"), body.get("note"), body.get("veto"),
                               body.get("reason"))
    except lines.EntryError as exc:
        raise ReviewError(404 if exc.field == "item" and "not an item" in str(exc) else 422, str(exc)) from None
    version = _store_call(repo.put_item, store, actor, review_id, item_id, entry)
    return {"id": review_id, "item": item_id, "saved": entry is not None, "version": version}


def attach(store, actor: Actor, review_id: int, item_id: str | None, data: bytes, name: str) -> dict:
    rec = _own_draft(store, actor, review_id)
    if item_id:
        try:
            lines.find_item(rec.frozen, item_id)
        except lines.EntryError as exc:
            raise ReviewError(404, str(exc)) from None
    try:
        media_type = files.accept(data)
    except files.AttachmentError as exc:
        raise ReviewError(413 if len(data) > files.MAX_BYTES else 415, str(exc)) from None
    name = "".join(c for c in (name or "") if c.isprintable()).strip()[:200] or "附件"  # shown on the sheet
    sha = _store_call(repo.add_attachment, store, actor, review_id, item_id or None, data, media_type, name,
                      files.MAX_FILES)
    return {"id": review_id, "sha256": sha, "media_type": media_type, "bytes": len(data), "item": item_id or None}


def submit(store, key, actor: Actor, review_id: int) -> dict:
    """Sign and close the review; 422 naming every applicable manual item not yet scored."""
    from collector.review import signed

    for _ in range(SUBMIT_TRIES):
        rec = _own_draft(store, actor, review_id)
        ls = lines.lines(rec.frozen, rec.entries, rec.attachments)
        sums = lines.totals(rec.frozen, ls)
        if sums["missing"]:
            raise ReviewError(422, f"{len(sums['missing'])} manual item(s) not scored yet: "
                                   + ", ".join(sums["missing"]))
        blobs = {a["sha256"]: _store_call(repo.blob, store, a["sha256"]) for a in rec.attachments}
        # What this review replaces is the current one when it is signed: a review submitted by someone else
        # while this one was a draft is corrected by it too, and named so (both kept, the newer current).
        current = repo.current_id(store, rec.point_code, rec.period_start, rec.period_end)
        replaced = repo.get(store, current) if current else None
        rec.replaces_id = current
        at = datetime.now(timezone.utc)
        bundle, manifest_sha = signed.build(rec, ls, sums, blobs, key, at, replaced)
        details = {"submitted_at": at, "point": rec.point_code, "from": rec.given_from, "to": rec.given_to,
                   "total": sums["total"], "automatic": sums["automatic"], "manual": sums["manual"],
                   "vetoed": sums["vetoed"], "overridden": sums["overridden"], "replaces": rec.replaces_id,
                   "replaces_reviewer": replaced.reviewer if replaced else None}
        if _store_call(repo.submit, store, actor, review_id, rec.version, bundle, manifest_sha, details):
            return {"id": review_id, "state": repo.SUBMITTED, "manifest_sha256": manifest_sha,
                    "total": sums["total"]}
    raise ReviewError(409, "entries kept arriving while the review was being signed; submit again")


def view(store, rec: repo.ReviewRecord) -> dict:
    """The review as GET /api/v1/reviews/{id} shows it: totals, every line, both verdicts where overridden."""
    atts = [{**a, "added_at": iso(a["added_at"])} for a in rec.attachments]
    ls = lines.lines(rec.frozen, rec.entries, atts)
    sums = lines.totals(rec.frozen, ls, [a for a in atts if not a["item"]])
    current = repo.current_id(store, rec.point_code, rec.period_start, rec.period_end)
    point = rec.frozen.get("point") or {}
    return {
        "id": rec.id, "point": rec.point_code, "name": point.get("name"), "region": rec.region_path,
        "profile": rec.profile, "profile_title": (rec.frozen.get("sheet") or {}).get("title"),
        "from": rec.given_from, "to": rec.given_to, "period": rec.frozen.get("period"),
        "state": rec.state, "current": current == rec.id, "reviewer": rec.identity,
        "opened_at": iso(rec.opened_at), "submitted_at": iso(rec.submitted_at), "replaces": rec.replaces_id,
        "replaced_by": rec.replaced_by, "version": rec.version, **sums,
        "chain": {k: v for k, v in (rec.frozen.get("chain") or {}).items() if k != "breaks"},
        "automatic_computed_at": rec.frozen.get("computed_at"),
        "items": [lines.line_json(x) for x in ls],
        "attachments": atts,
        "manifest_sha256": rec.manifest_sha256, "bundle_sha256": rec.bundle_sha256,
    }


def blob(store, sha: str) -> bytes:
    data = _store_call(repo.blob, store, sha)
    if data is None:
        raise ReviewError(404, f"no stored file {sha[:16]}…")
    return data


def sheet_file(store, rec: repo.ReviewRecord, name: str) -> bytes:
    """The final sheet: the signed bundle's own sheet.pdf/.xlsx once submitted, else the draft as it stands."""
    import io
    import zipfile

    from collector.review import finalsheet, signed

    if rec.state == repo.SUBMITTED:
        with zipfile.ZipFile(io.BytesIO(blob(store, rec.bundle_sha256))) as zf:
            return zf.read(name)
    ls = lines.lines(rec.frozen, rec.entries, rec.attachments)
    replaced = repo.get(store, rec.replaces_id) if rec.replaces_id else None
    ctx = signed.sheet_context(rec, ls, lines.totals(rec.frozen, ls), replaced, draft=True)
    return finalsheet.pdf_bytes(ctx) if name.endswith(".pdf") else finalsheet.xlsx_bytes(ctx)
