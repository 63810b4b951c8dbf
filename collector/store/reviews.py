"""Reviews in the store (tables in reviewmodels.py): open, enter items, attach files, submit, read.

Every write is audited in its own transaction (collector/store/audit.py). Entries and attachments lock the
review's row first (``FOR UPDATE`` on PostgreSQL; SQLite has one writer) and refuse anything but a draft,
so nothing lands on a review after it was submitted. Submitting compares the ``version`` the bundle was
built from with the row's: an entry that arrived meanwhile makes the caller build it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select

from collector.store import StoreError, utcnow
from collector.store.audit import Actor, append
from collector.store.regionscope import scoped
from collector.store.reviewmodels import Blob, Review, ReviewAttachment, ReviewItem

DRAFT, SUBMITTED = "draft", "submitted"


@dataclass
class ReviewRecord:
    """One review as read: the row's fields, its entries and attachments."""

    id: int
    point_code: str
    region_path: str
    profile: str
    period_start: datetime
    period_end: datetime
    given_from: str
    given_to: str
    state: str
    reviewer: str
    identity: dict
    opened_at: datetime
    submitted_at: datetime | None
    replaces_id: int | None
    version: int
    frozen: dict
    bundle_sha256: str | None
    manifest_sha256: str | None
    entries: dict  # item id -> {score, note, veto, reason, updated_at}
    attachments: list  # [{sha256, media_type, bytes, name, item, added_at}]
    replaced_by: list  # ids of the reviews that correct this one


def _record(s, r: Review) -> ReviewRecord:
    entries = {e.item_id: {"score": e.score, "note": e.note, "veto": e.veto, "reason": e.reason,
                           "updated_at": e.updated_at}
               for e in s.scalars(select(ReviewItem).where(ReviewItem.review_id == r.id).order_by(ReviewItem.item_id))}
    files = [{"sha256": a.sha256, "media_type": a.media_type, "bytes": a.size, "name": a.name, "item": a.item_id,
              "added_at": a.added_at}
             for a in s.scalars(select(ReviewAttachment).where(ReviewAttachment.review_id == r.id)
                                .order_by(ReviewAttachment.id))]
    later = list(s.scalars(select(Review.id).where(Review.replaces_id == r.id).order_by(Review.id)))
    return ReviewRecord(r.id, r.point_code, r.region_path, r.profile, r.period_start, r.period_end, r.given_from,
                        r.given_to, r.state, r.reviewer, r.identity, r.opened_at, r.submitted_at, r.replaces_id,
                        r.version, r.frozen, r.bundle_sha256, r.manifest_sha256, entries, files, later)


def get(store, review_id: int) -> ReviewRecord | None:
    with store.session() as s:
        r = s.get(Review, review_id)
        return None if r is None else _record(s, r)


def same_period(stmt, code: str, start: datetime, end: datetime):
    return stmt.where(Review.point_code == code, Review.period_start == start, Review.period_end == end)


def current_id(store, code: str, start: datetime, end: datetime) -> int | None:
    """The point's current review for the period: the newest submitted one."""
    with store.session() as s:
        return s.scalar(same_period(select(Review.id), code, start, end).where(Review.state == SUBMITTED)
                        .order_by(Review.submitted_at.desc(), Review.id.desc()).limit(1))


def open_draft(store, code: str, start: datetime, end: datetime, reviewer: str) -> int | None:
    with store.session() as s:
        return s.scalar(same_period(select(Review.id), code, start, end)
                        .where(Review.state == DRAFT, Review.reviewer == reviewer).order_by(Review.id.desc()).limit(1))


def create(store, actor: Actor, *, point_code: str, region_path: str, profile: str, start: datetime,
           end: datetime, given_from: str, given_to: str, identity: dict, frozen: dict,
           replaces_id: int | None, replaces_reviewer: str | None) -> int:
    with store.write_session() as s:
        r = Review(point_code=point_code, region_path=region_path, profile=profile, period_start=start,
                   period_end=end, given_from=given_from, given_to=given_to, state=DRAFT, reviewer=actor.name,
                   identity=identity, opened_at=utcnow(), replaces_id=replaces_id, version=0, frozen=frozen)
        s.add(r)
        s.flush()
        append(s, actor, "review.open", f"review:{r.id}",
               {"point": point_code, "from": given_from, "to": given_to, "profile": profile,
                "automatic": frozen.get("sheet", {}).get("earned"), "replaces": replaces_id,
                "replaces_reviewer": replaces_reviewer, "reports": frozen.get("chain", {}).get("reports"),
                "chain_head": frozen.get("chain", {}).get("head")}, region_path)
        return r.id


def _locked_draft(s, review_id: int) -> Review:
    r = s.scalar(select(Review).where(Review.id == review_id).with_for_update())
    if r is None:
        raise StoreError("no_review", f"no review {review_id}")
    if r.state != DRAFT:
        raise StoreError("submitted", f"review {review_id} was submitted and cannot change; open a correction")
    return r


def put_item(store, actor: Actor, review_id: int, item_id: str, entry: dict | None) -> int:
    """Set (or, with ``entry`` None, clear) one item's entry; returns the review's new version."""
    with store.write_session() as s:
        r = _locked_draft(s, review_id)
        s.execute(delete(ReviewItem).where(ReviewItem.review_id == review_id, ReviewItem.item_id == item_id))
        if entry is not None:
            s.add(ReviewItem(review_id=review_id, item_id=item_id, score=entry["score"], note=entry.get("note") or "",
                             veto=bool(entry.get("veto")), reason=entry.get("reason"), updated_at=utcnow()))
        r.version += 1
        append(s, actor, "review.item", f"review:{review_id}",
               {"item": item_id, **({"cleared": True} if entry is None else
                                    {k: entry.get(k) for k in ("score", "veto", "reason", "note")})},
               r.region_path)
        return r.version


def add_attachment(store, actor: Actor, review_id: int, item_id: str | None, data: bytes, media_type: str,
                   name: str, max_count: int) -> str:
    sha = hashlib.sha256(data).hexdigest()
    with store.write_session() as s:
        r = _locked_draft(s, review_id)
        if s.scalar(select(ReviewAttachment.id).where(ReviewAttachment.review_id == review_id,
                                                      ReviewAttachment.sha256 == sha)) is not None:
            return sha  # the same file again (a retried upload): kept once
        count = s.scalar(select(func.count()).select_from(ReviewAttachment)
                         .where(ReviewAttachment.review_id == review_id))
        if count >= max_count:
            raise StoreError("too_many", f"a review holds at most {max_count} attachments")
        _put_blob(s, sha, media_type, data)
        s.add(ReviewAttachment(review_id=review_id, item_id=item_id, sha256=sha, media_type=media_type,
                               size=len(data), name=name[:200], added_at=utcnow()))
        r.version += 1
        append(s, actor, "review.attach", f"review:{review_id}",
               {"item": item_id, "sha256": sha, "media_type": media_type, "bytes": len(data), "name": name[:200]},
               r.region_path)
        return sha


def _put_blob(s, sha: str, media_type: str, data: bytes) -> None:
    if s.scalar(select(Blob.sha256).where(Blob.sha256 == sha)) is None:
        s.add(Blob(sha256=sha, media_type=media_type, size=len(data), data=data, created_at=utcnow()))
        s.flush()


def blob(store, sha: str) -> bytes | None:
    """The bytes stored under ``sha``, checked against it (a changed blob is not served)."""
    with store.session() as s:
        data = s.scalar(select(Blob.data).where(Blob.sha256 == sha))
    if data is None:
        return None
    data = bytes(data)
    if hashlib.sha256(data).hexdigest() != sha:
        raise StoreError("blob_changed", f"stored file {sha[:16]}… no longer matches its digest")
    return data


def submit(store, actor: Actor, review_id: int, built_version: int, bundle: bytes, manifest_sha256: str,
           details: dict) -> bool:
    """Store the signed bundle and close the review; False when an entry arrived after ``built_version`` or
    another review of the point and period was submitted after the bundle named the one it replaces."""
    sha = hashlib.sha256(bundle).hexdigest()
    with store.write_session() as s:
        r = _locked_draft(s, review_id)
        if r.version != built_version:
            return False
        current = s.scalar(same_period(select(Review.id), r.point_code, r.period_start, r.period_end)
                           .where(Review.state == SUBMITTED)
                           .order_by(Review.submitted_at.desc(), Review.id.desc()).limit(1).with_for_update())
        if current != details["replaces"]:
            return False
        _put_blob(s, sha, "application/zip", bundle)
        r.state, r.submitted_at, r.bundle_sha256, r.manifest_sha256 = SUBMITTED, details["submitted_at"], sha, \
            manifest_sha256
        r.replaces_id = current
        append(s, actor, "review.submit", f"review:{review_id}",
               {**{k: v for k, v in details.items() if k != "submitted_at"}, "bundle_sha256": sha,
                "manifest_sha256": manifest_sha256}, r.region_path)
        return True


def listing(store, scope: str, code: str | None = None, start: datetime | None = None,
            end: datetime | None = None, limit: int = 500) -> list[dict]:
    """Reviews beneath ``scope``, newest first, as plain rows (no entries)."""
    stmt = scoped(select(Review), Review.region_path, scope)
    if code is not None:
        stmt = stmt.where(Review.point_code == code)
    if start is not None and end is not None:
        stmt = stmt.where(Review.period_start == start, Review.period_end == end)
    with store.session() as s:
        rows = s.scalars(stmt.order_by(Review.id.desc()).limit(limit)).all()
        return [{"id": r.id, "point": r.point_code, "region": r.region_path, "profile": r.profile,
                 "from": r.given_from, "to": r.given_to, "period_start": r.period_start, "period_end": r.period_end,
                 "state": r.state, "reviewer": r.reviewer, "person": (r.identity or {}).get("person"),
                 "opened_at": r.opened_at, "submitted_at": r.submitted_at, "replaces": r.replaces_id}
                for r in rows]


def submitted_in_round(store, scope: str, start: datetime, end: datetime) -> dict[str, ReviewRecord]:
    """Each point's current (newest submitted) review for exactly this period, beneath ``scope``."""
    stmt = scoped(select(Review), Review.region_path, scope).where(
        Review.state == SUBMITTED, Review.period_start == start, Review.period_end == end)
    out: dict[str, ReviewRecord] = {}
    with store.session() as s:
        for r in s.scalars(stmt.order_by(Review.submitted_at, Review.id)):
            out[r.point_code] = _record(s, r)  # later ones win: the newest is current
    return out
