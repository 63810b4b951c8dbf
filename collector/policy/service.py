"""Setting and reading policy: the rules of a change, over the store's documents (collector/store/policies.py).

A change to a region node's document (or a point's) is refused, naming the point and the field, when the
effective policy of the node itself or of any point beneath it would fail the agent's validator; then
nothing changes. An accepted change issues the new digests of the points it touches in the same transaction,
so the collector knows from that moment which policy each point must run (``agent.policy``).
"""

from __future__ import annotations

from agent.confignode import ConfigError
from collector.policy.documents import (
    Document,
    Effective,
    PolicyError,
    diff,
    merge,
    parse_document,
    validate,
    where_in,
)
from collector.registry.regions import RegionError, normalize_path
from collector.store import policies
from collector.store.audit import Actor

NODE_PROBE = "region-node"  # the point code the node's own merged policy is validated as


def effective(view: policies.View, point: policies.PointPolicyInputs) -> Effective | None:
    """The point's effective policy; None when no document applies to it (registered devices alone are none)."""
    layers = view.layers(point.region_path, point.code)
    if not layers:
        return None
    return merge(layers, point.devices)


def _check(eff: Effective, code: str, document: Document | None, checked: set[str]) -> None:
    if eff.digest in checked:
        return
    try:
        validate(eff.policy, code, document.file if document else "effective policy")
    except ConfigError as exc:
        line = where_in(document, exc.field) if document else None
        where = f"{document.file}:{line}" if document and line else (document.file if document else "policy")
        whom = "this node's own merged policy" if code == NODE_PROBE else f"point {code}"
        raise PolicyError(f"{where}: {exc.field or '(top level)'}: {exc.problem} (in the effective policy of "
                          f"{whom})", field=exc.field, point=None if code == NODE_PROBE else code,
                          file=document.file if document else "", line=line) from None
    checked.add(eff.digest)


def plan_for(node_path: str, codes: list[str] | None, document: Document | None):
    """A plan (see policies.put_document): validate the node's own merge and every point's, and return the
    digests to issue."""

    def plan(view: policies.View) -> dict:
        checked: set[str] = set()
        if node_path is not None and codes is None:
            layers = view.layers(node_path, None)
            if layers:
                _check(merge(layers), NODE_PROBE, document, checked)
        issues = {}
        for point in view.points(node_path or "/", codes):
            eff = effective(view, point)
            if eff is None:
                continue
            _check(eff, point.code, document, checked)
            issues[point.code] = (eff.digest, eff.policy)
        return issues

    return plan


def set_region(store, path: str, text: str, file: str, actor: Actor) -> dict:
    try:
        path = normalize_path(path)
    except RegionError as exc:
        raise PolicyError(str(exc), field="region", code="bad_region") from None
    document = parse_document(text, file)
    return policies.put_document(store, policies.REGION, path, path, text, document.body, actor,
                                 plan_for(path, None, document), diff)


def set_point(store, code: str, text: str, file: str, actor: Actor) -> dict:
    point = policies.point_inputs(store, code)
    if point is None:
        raise PolicyError(f"no such point '{code}'", field="point", code="no_such_point")
    document = parse_document(text, file)
    return policies.put_document(store, policies.POINT, code, point.region_path, text, document.body, actor,
                                 plan_for(point.region_path, [code], document), diff)


def show_point(store, code: str) -> Effective | None:
    point = policies.point_inputs(store, code)
    if point is None:
        raise PolicyError(f"no such point '{code}'", field="point", code="no_such_point")
    return policies.read(store, lambda view: effective(view, point))


def reissue(store, codes: list[str] | None = None, scope: str = "/") -> int:
    """After the registry changed (devices, a point moved): issue the points' new digests. Points whose new
    effective policy would not validate keep their last issued one, and the error is raised."""
    return policies.issue(store, plan_for(scope if codes is None else "/", codes, None))


def current(store, code: str) -> tuple[policies.Issued | None, Effective | None]:
    """What to serve the point's agent now: its current issue, re-issued first if the documents or the
    registry changed since (a safety net; changes issue their digests themselves). One read transaction in
    the common case."""

    def look(view: policies.View):
        found = view.points("/", [code])
        eff = effective(view, found[0]) if found else None
        return eff, (view.current_issue(code) if eff is not None else None)

    eff, issued = policies.read(store, look)
    if eff is None:
        return None, None
    if issued is None or issued.digest != eff.digest:
        policies.issue(store, plan_for("/", [code], None))
        issued = policies.current_issue(store, code)
    return issued, eff
