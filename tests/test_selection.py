"""Automatic selection: precedence, primary, type ranking, tie-break, and the reasons."""

from __future__ import annotations

import random
from typing import Any

from matcher.api.models import parse_profile
from matcher.core.selection import select

AIM = "qwen/qwen3-32b"


def prof(
    name: str,
    *,
    namespace: str | None = None,
    status: str | None = "Ready",
    aim_id: str = AIM,
    **spec: Any,
):
    doc: dict[str, Any] = {
        "apiVersion": "aim.eai.amd.com/v1alpha2",
        "kind": "AIMProfile" if namespace else "AIMClusterProfile",
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": {
            "aimId": aim_id,
            "image": "img:1",
            "metric": "latency",
            "precision": "fp8",
            "type": "optimized",
            "primary": True,
            **spec,
        },
    }
    if status is not None:
        doc["status"] = {"status": status}
    return parse_profile(doc)


def names(selection):
    return selection.chosen.name if selection.chosen else None


def reasons(selection):
    return {p.name: why for p, why in selection.rejected}


def test_primary_optimized_cluster_profile_is_chosen():
    sel = select([prof("b"), prof("a", type="general"), prof("c", primary=False)], AIM)
    assert names(sel) == "b"
    why = reasons(sel)
    assert why["a"].startswith("type general ranks below optimized")
    assert why["c"].startswith("not primary")
    assert "primary" in sel.reason


def test_namespaced_beats_cluster():
    sel = select(
        [prof("cluster"), prof("mine", namespace="ml-team", type="preview")],
        AIM,
        namespace="ml-team",
    )
    assert names(sel) == "mine"
    assert reasons(sel)["cluster"] == "a namespaced profile takes precedence over cluster profiles"


def test_other_namespaces_are_invisible_and_no_namespace_sees_cluster_profiles_only():
    pool = [prof("theirs", namespace="other"), prof("cluster", type="unoptimized")]
    assert names(select(pool, AIM, namespace="ml-team")) == "cluster"
    assert (
        "not visible from namespace ml-team"
        in reasons(select(pool, AIM, namespace="ml-team"))["theirs"]
    )
    assert names(select(pool, AIM)) == "cluster"


def test_type_ranking_order():
    pool = [prof(t, type=t) for t in ("unoptimized", "preview", "general", "optimized")]
    pool.append(prof("untyped", type=None))
    order = []
    while pool:
        chosen = select(pool, AIM).chosen
        assert chosen is not None
        order.append(chosen.name)
        pool = [p for p in pool if p is not chosen]
    assert order == ["optimized", "general", "preview", "unoptimized", "untyped"]


def test_primary_wins_over_type_when_non_primary_are_included():
    sel = select(
        [prof("np", primary=False), prof("p", type="preview")], AIM, include_non_primary=True
    )
    assert names(sel) == "p"
    assert reasons(sel)["np"] == "the chosen profile is primary"


def test_non_primary_only_when_asked():
    pool = [prof("np", primary=False)]
    assert select(pool, AIM).chosen is None
    assert names(select(pool, AIM, include_non_primary=True)) == "np"


def test_tie_break_is_by_name_and_independent_of_order():
    pool = [prof(n) for n in ("zeta", "alpha", "mid")]
    for _ in range(5):
        random.shuffle(pool)
        sel = select(pool, AIM)
        assert names(sel) == "alpha"
        assert reasons(sel)["zeta"].startswith("same rank; tie broken by name")


def test_only_ready_profiles_with_the_metric_and_precision_are_candidates():
    pool = [
        prof("na", status="NotAvailable"),
        prof("pending", status=None),
        prof("thr", metric="throughput"),
        prof("fp4", precision="fp4"),
        prof("ok", type="general"),
        prof("other-model", aim_id="meta/llama"),
    ]
    sel = select(pool, AIM, metric="latency", precision="fp8")
    assert names(sel) == "ok"
    why = reasons(sel)
    assert why["na"] == "not Ready (NotAvailable)"
    assert why["pending"] == "not Ready (not evaluated)"
    assert why["thr"] == "metric is throughput, wanted latency"
    assert why["fp4"] == "precision is fp4, wanted fp8"
    assert "other-model" not in why


def test_nothing_to_choose():
    assert select([], AIM).reason == f"no profile has aimId {AIM}"
    sel = select([prof("na", status="NotAvailable")], AIM)
    assert sel.chosen is None
    assert sel.reason == f"no Ready profile for aimId {AIM} matches"
