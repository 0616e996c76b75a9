"""Automatic selection: precedence, primary, type ranking, tie-break, and the reasons."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from matcher.api.models import Profile, parse_profile
from matcher.core.selection import compare_versions, select

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


# --- the full ranking (AIM Engine's resolver order, docs/architecture.md) -----------------------


def order_of(pool, **kw):
    """Names in the order repeated selection picks them."""
    out = []
    pool = list(pool)
    while pool:
        chosen = select(pool, AIM, include_non_primary=True, **kw).chosen
        assert chosen is not None
        out.append(chosen.name)
        pool = [p for p in pool if p is not chosen]
    return out


def with_version(profile, version):
    status = profile.status.model_copy(update={"version": version})
    return replace(profile, status=status)


def test_accelerator_preference_newest_instinct_first_and_configurable():
    pool = [prof(m.lower(), acceleratorModel=m) for m in ("MI300X", "MI355X", "MI325X")]
    pool.append(prof("epyc", acceleratorModel="EPYC_ZEN5"))
    pool.append(prof("none"))
    assert order_of(pool) == ["mi355x", "mi325x", "mi300x", "epyc", "none"]
    why = reasons(select(pool, AIM))
    assert why["mi300x"] == (
        "accelerator MI300X ranks below MI355X "
        "(MI355X > MI350X > MI325X > MI300X > MI250X > MI210 > R9700 > W7900 > others)"
    )
    assert order_of(pool, accelerator_preference=("MI300X", "mi325x")) == [
        "mi300x", "mi325x", "epyc", "mi355x", "none",
    ]  # fmt: skip


def test_metric_then_precision_then_fewer_devices_then_gpu():
    metrics = [prof("thr", metric="throughput"), prof("lat"), prof("unset", metric=None)]
    assert order_of(metrics) == ["lat", "thr", "unset"]
    precisions = ["fp64", "fp32", "bf16", "fp16", "int8", "fp8", "int4", "fp4"]
    pool = [prof(p, precision=p) for p in precisions] + [prof("unset", precision=None)]
    assert order_of(pool) == [*reversed(precisions), "unset"]
    devices = [
        prof("eight", acceleratorCount=8),
        prof("zero", acceleratorCount=0),
        prof("one", acceleratorCount=1),
        prof("unset"),
    ]
    assert order_of(devices)[:2] == ["one", "eight"]
    assert reasons(select(devices, AIM))["eight"] == (
        "acceleratorCount 8 ranks below 1 (fewer first, 0 or unset last)"
    )
    kinds = [prof("cpu", acceleratorType="cpu"), prof("gpu", acceleratorType="gpu"), prof("x")]
    assert order_of(kinds)[0] == "gpu"
    assert reasons(select(kinds, AIM))["cpu"] == (
        "acceleratorType cpu ranks below gpu (gpu before cpu or unset)"
    )


def test_version_newer_first_semver_above_other_tags_above_none():
    pool = [
        with_version(prof("v085"), "0.8.5"),
        with_version(prof("v0810"), "v0.8.10"),
        with_version(prof("v09rc"), "0.9.0-rc1"),
        with_version(prof("v09"), "0.9"),
        with_version(prof("latest"), "latest"),
        with_version(prof("none"), None),
    ]
    assert order_of(pool) == ["v09", "v09rc", "v0810", "v085", "latest", "none"]
    assert reasons(select(pool, AIM))["v085"] == (
        "version 0.8.5 ranks below 0.9 (newer first, semantic versions above other tags)"
    )


def test_compare_versions_follows_aim_engine():
    assert compare_versions("1.10.0", "1.9.9") > 0
    assert compare_versions("1.0.0", "1.0.0-rc.2") > 0
    assert compare_versions("1.0.0-rc.10", "1.0.0-rc.2") > 0
    assert compare_versions("0.11-rc21", "0.11-rc3") > 0  # not semver: compared by tokens
    assert compare_versions("1.0.0", "zzz") > 0
    assert compare_versions("", "0.1") < 0
    assert compare_versions("v1.2", "1.2.0") == 0


def test_tiers_apply_in_order():
    """Each tier only breaks ties of the ones before it."""
    better_type = prof("general-mi355x", type="general", acceleratorModel="MI355X")
    better_model = prof("optimized-mi300x", acceleratorModel="MI300X", metric="throughput")
    assert names(select([better_type, better_model], AIM)) == "optimized-mi300x"
    fewer = prof("fp16-1", precision="fp16", acceleratorCount=1)
    smaller = prof("fp8-8", precision="fp8", acceleratorCount=8)
    assert names(select([fewer, smaller], AIM)) == "fp8-8"


def test_ranking_is_independent_of_listing_order_and_every_loser_has_a_reason():
    pool = [
        prof("a", acceleratorModel="MI300X", acceleratorCount=2),
        prof("b", acceleratorModel="MI325X", precision="fp16"),
        prof("c", acceleratorModel="MI325X", metric="throughput"),
        prof("d", type="general"),
        prof("e", namespace="ml-team", type="preview"),
        prof("f", status="NotAvailable"),
        prof("g", primary=False),
    ]
    first = select(pool, AIM, namespace="ml-team")
    for _ in range(10):
        random.shuffle(pool)
        again = select(pool, AIM, namespace="ml-team")
        assert [p.name for p in again.ranking] == [p.name for p in first.ranking]
        assert [(p.name, w) for p, w in again.rejected] == [(p.name, w) for p, w in first.rejected]
    assert [p.name for p in first.ranking] == ["e", "b", "c", "a", "d"]
    assert {p.name for p, _ in first.rejected} == {"a", "b", "c", "d", "f", "g"}
    assert all(why for _, why in first.rejected)


def test_base_profiles_are_never_selected_and_manual_selection_only_has_no_effect():
    base = prof("base", aim_id="")
    manual = prof("manual", manualSelectionOnly=True)
    assert select([base], "").chosen is None
    sel = select([base, manual], AIM)
    assert names(sel) == "manual"  # as in AIM Engine today: the field is ignored
    assert "base" not in reasons(sel)


def test_the_key_sort_ranks_exactly_as_the_tiers_compare():
    """select() sorts by each tier's key (admission ranks on every pod); the order must be the
    pairwise first-difference order of the tiers, which the reasons are written from."""
    import functools  # noqa: PLC0415

    from matcher.core.selection import _first_difference, tiers  # noqa: PLC0415

    rng = random.Random(7)
    versions = [None, "1.2.0", "v1.2", "1.10.0", "1.2.0-rc.1", "latest", "0.8.5", "2024-05"]
    pool = [
        prof(
            f"p{i}",
            namespace=rng.choice([None, None, "ml-team"]),
            primary=rng.random() < 0.5,
            type=rng.choice(["optimized", "general", "preview", "unoptimized", None]),
            acceleratorModel=rng.choice(["MI300X", "MI325X", "mi355x", "W7900", "X1", None]),
            metric=rng.choice(["latency", "throughput", None]),
            precision=rng.choice(["fp8", "fp4", "bf16", None]),
            acceleratorCount=rng.choice([0, 1, 2, 8, None]),
        )
        for i in range(300)
    ]
    pool = [
        replace(p, status=p.status.model_copy(update={"version": rng.choice(versions)}))
        for p in pool
        if p.status is not None
    ]
    order = tiers()
    by_key = sorted(pool, key=lambda p: tuple(t.key(p) for t in order))

    def compare(a: Profile, b: Profile) -> int:
        return _first_difference(a, b, order)[0]

    by_compare = sorted(pool, key=functools.cmp_to_key(compare))
    assert [p.name for p in by_key] == [p.name for p in by_compare]
