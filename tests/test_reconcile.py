"""The detector's safety rules, as pure functions: hysteresis, failed probes, restarts, patches."""

from __future__ import annotations

import pytest

from detector.facts import CPU_SOURCE, GPU_SOURCE
from detector.labels import (
    OWNED_LABELS_ANNOTATION,
    accelerator_label_key,
    epyc_id,
    partition_label_key,
)
from detector.reconcile import (
    ProbeResult,
    State,
    annotation_keys,
    node_patch,
    published_labels,
    reconcile,
    source_of,
)

MI300X = accelerator_label_key("MI300X")
MI325X = accelerator_label_key("MI325X")
MI210 = accelerator_label_key("MI210")
SPX = partition_label_key("default")
SPX_NPS1 = partition_label_key("SPX-NPS1")
CPX = partition_label_key("CPX-NPS4")
ZEN4 = accelerator_label_key(epyc_id("ZEN4"))
ZEN5 = accelerator_label_key(epyc_id("ZEN5"))
FOREIGN = "kubernetes.io/hostname"
NFD_CPU = "feature.node.kubernetes.io/cpu-cpuid.AVX512F"

GPU_8 = {MI300X: "8", SPX: "8"}
CPU_2S = {ZEN4: "192"}


def ok_gpu(labels):
    return ProbeResult.ok(GPU_SOURCE, labels)


def ok_cpu(labels):
    return ProbeResult.ok(CPU_SOURCE, labels)


def run(state, *results, confirmations=2):
    return reconcile(state, results, confirmations)


def test_first_run_publishes_what_the_probes_see():
    d = run(State(), ok_gpu(GPU_8), ok_cpu(CPU_2S))
    assert d.labels == {**GPU_8, **CPU_2S}
    assert d.added == tuple(sorted([MI300X, SPX, ZEN4]))
    assert d.healthy
    assert not d.removed
    assert not d.pending_removal


def test_unchanged_probe_changes_nothing():
    d1 = run(State(), ok_gpu(GPU_8), ok_cpu(CPU_2S))
    d2 = run(d1.state, ok_gpu(GPU_8), ok_cpu(CPU_2S))
    assert d2.labels == d1.labels
    assert (d2.added, d2.changed, d2.removed) == ((), (), ())


def test_gone_hardware_is_removed_only_after_two_successful_probes():
    d1 = run(State(), ok_gpu(GPU_8), ok_cpu(CPU_2S))
    d2 = run(d1.state, ok_gpu({}), ok_cpu(CPU_2S))
    assert d2.labels == {**GPU_8, **CPU_2S}, "one probe that misses the GPUs removes nothing"
    assert d2.pending_removal == {MI300X: 1, SPX: 1}
    d3 = run(d2.state, ok_gpu({}), ok_cpu(CPU_2S))
    assert d3.labels == CPU_2S
    assert d3.removed == (MI300X, SPX)
    assert d3.pending_removal == {}


def test_hardware_back_before_confirmation_cancels_the_removal():
    d1 = run(State(), ok_gpu(GPU_8))
    d2 = run(d1.state, ok_gpu({}))
    d3 = run(d2.state, ok_gpu(GPU_8))
    assert d3.pending_removal == {}
    d4 = run(d3.state, ok_gpu({}))
    assert d4.labels == GPU_8, "the count starts again after the hardware came back"


@pytest.mark.parametrize("confirmations", [1, 3, 5])
def test_confirmations_are_configurable(confirmations):
    state = run(State(), ok_gpu(GPU_8)).state
    for seen in range(1, confirmations):
        d = run(state, ok_gpu({}), confirmations=confirmations)
        assert d.labels == GPU_8
        assert d.pending_removal[MI300X] == seen
        state = d.state
    d = run(state, ok_gpu({}), confirmations=confirmations)
    assert d.labels == {}


def test_confirmations_below_one_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        run(State(), ok_gpu(GPU_8), confirmations=0)


def test_failed_probe_keeps_its_sources_labels_and_marks_unhealthy():
    d1 = run(State(), ok_gpu(GPU_8), ok_cpu(CPU_2S))
    d2 = run(d1.state, ProbeResult.failed(GPU_SOURCE, "EPERM on kfd"), ok_cpu(CPU_2S))
    assert d2.labels == d1.labels
    assert not d2.healthy
    assert d2.errors == {GPU_SOURCE: "EPERM on kfd"}


def test_failed_probe_does_not_block_the_other_source():
    d1 = run(State(), ok_gpu(GPU_8), ok_cpu(CPU_2S))
    d2 = run(d1.state, ProbeResult.failed(GPU_SOURCE, "timeout"), ok_cpu({ZEN4: "96"}))
    assert d2.labels[MI300X] == "8"
    assert d2.pending_removal == {ZEN4: 1}, "the CPU source still runs its own rules"
    d3 = run(d2.state, ProbeResult.failed(GPU_SOURCE, "timeout"), ok_cpu({ZEN4: "96"}))
    assert d3.labels == {**GPU_8, ZEN4: "96"}
    assert d3.errors == {GPU_SOURCE: "timeout"}


def test_failed_probe_interrupts_the_consecutive_count():
    d1 = run(State(), ok_gpu(GPU_8))
    d2 = run(d1.state, ok_gpu({}))
    d3 = run(d2.state, ProbeResult.failed(GPU_SOURCE, "timeout"))
    assert d3.labels == GPU_8
    assert d3.pending_removal == {}
    d4 = run(d3.state, ok_gpu({}))
    assert d4.labels == GPU_8, "a failed run between two misses: the misses are not consecutive"
    assert run(d4.state, ok_gpu({})).labels == {}


def test_failed_probe_never_changes_a_value():
    d1 = run(State(), ok_gpu(GPU_8))
    d2 = run(d1.state, ProbeResult.failed(GPU_SOURCE, "boom"))
    assert d2.labels == GPU_8
    assert d2.changed == ()


def test_higher_count_applies_at_once():
    d1 = run(State(), ok_gpu({MI300X: "4", SPX: "4"}), ok_cpu(CPU_2S))
    d2 = run(d1.state, ok_gpu(GPU_8), ok_cpu(CPU_2S))
    assert d2.labels == {**GPU_8, **CPU_2S}
    assert d2.changed == (MI300X, SPX)


def test_a_lower_count_is_a_removal_and_waits_for_the_confirmations():
    """Issue 10: a decrease in a count is a removal (59 KFD nodes instead of 64 mid-switch, a
    GPU that fell off the bus for one probe): it waits for the same confirmations."""
    d1 = run(State(), ok_gpu({MI300X: "8", CPX: "64"}))
    d2 = run(d1.state, ok_gpu({MI300X: "8", CPX: "59"}))
    assert d2.labels == {MI300X: "8", CPX: "64"}
    assert d2.changed == ()
    assert d2.pending_removal == {CPX: 1}
    d3 = run(d2.state, ok_gpu({MI300X: "8", CPX: "64"}))
    assert d3.labels == {MI300X: "8", CPX: "64"}
    assert d3.pending_removal == {}, "the full count came back: nothing pending any more"
    d4 = run(
        run(d3.state, ok_gpu({MI300X: "7", CPX: "56"})).state, ok_gpu({MI300X: "7", CPX: "56"})
    )
    assert d4.labels == {MI300X: "7", CPX: "56"}, "two readings in a row: the GPU is gone"
    assert d4.changed == (MI300X, CPX)


@pytest.mark.parametrize("confirmations", [1, 2, 3])
def test_partition_labels_never_contradict_each_other_during_a_mode_switch(confirmations):
    """SPX-NPS1 -> CPX-NPS4: the node shows the old scheme until the new one is confirmed, then
    the new one alone; never ``default=8`` next to ``CPX-NPS4=64`` (issue 10, defect 4)."""
    spx = {MI300X: "8", SPX: "8", SPX_NPS1: "8"}
    cpx = {MI300X: "8", CPX: "64"}
    state = run(State(), ok_gpu(spx), confirmations=confirmations).state
    seen = []
    for _ in range(confirmations + 1):
        decision = run(state, ok_gpu(cpx), confirmations=confirmations)
        seen.append(decision.labels)
        state = decision.state
    assert all(labels in (spx, cpx) for labels in seen), seen
    assert seen[confirmations - 1] == cpx
    assert seen[-1] == cpx


def test_driver_not_loaded_yet_then_loaded_never_mixes_schemes():
    """A CPX-NPS4 node boots: amdgpu is not loaded, its GPUs are not counted at all (no
    ``default=8`` from partition files that do not exist yet); then the driver loads."""
    booting = run(State(), ok_gpu({}), ok_cpu(CPU_2S))
    assert booting.labels == CPU_2S
    loaded = run(booting.state, ok_gpu({MI300X: "8", CPX: "64"}), ok_cpu(CPU_2S))
    assert loaded.labels == {MI300X: "8", CPX: "64", **CPU_2S}
    assert loaded.added == tuple(sorted((CPX, MI300X)))


def test_model_swap_on_one_source_waits_and_never_shows_both_models():
    d1 = run(State(), ok_gpu(GPU_8))
    d2 = run(d1.state, ok_gpu({MI325X: "8", SPX: "8"}))
    assert d2.labels == GPU_8
    assert d2.pending_removal == {MI300X: 1}
    d3 = run(d2.state, ok_gpu({MI325X: "8", SPX: "8"}))
    assert d3.labels == {MI325X: "8", SPX: "8"}
    assert (d3.added, d3.removed) == ((MI325X,), (MI300X,))


def test_a_second_model_added_applies_at_once():
    d1 = run(State(), ok_gpu(GPU_8))
    d2 = run(d1.state, ok_gpu({MI300X: "8", MI210: "2", SPX: "10"}))
    assert d2.labels == {MI300X: "8", MI210: "2", SPX: "10"}
    assert d2.added == (MI210,)


def test_a_reading_is_published_whole_or_not_at_all():
    """Keys of a pending reading do not leak in next to the ones it would replace."""
    d1 = run(State(), ok_gpu(GPU_8))
    d2 = run(d1.state, ok_gpu({MI300X: "8", CPX: "64"}))
    assert CPX not in d2.labels
    assert d2.added == ()


def test_source_without_result_is_left_alone():
    d1 = run(State(), ok_gpu(GPU_8), ok_cpu(CPU_2S))
    d2 = run(d1.state, ok_cpu(CPU_2S))
    assert d2.labels == d1.labels
    assert d2.healthy


def test_restart_seeds_from_published_labels_and_a_failed_first_probe_keeps_them():
    node_labels = {**GPU_8, **CPU_2S, FOREIGN: "n1"}
    state = State.from_published(node_labels)
    assert dict(state.labels) == {**GPU_8, **CPU_2S}
    d = run(state, ProbeResult.failed(GPU_SOURCE, "amdsmi init failed"), ok_cpu(CPU_2S))
    assert d.labels == {**GPU_8, **CPU_2S}


def test_restart_then_hardware_gone_still_needs_confirmations():
    state = State.from_published(GPU_8)
    d1 = run(state, ok_gpu({}))
    assert d1.labels == GPU_8
    assert run(d1.state, ok_gpu({})).labels == {}


def test_probe_reporting_a_foreign_or_other_source_key_is_a_bug():
    with pytest.raises(ValueError, match="not a detector label key"):
        run(State(), ok_gpu({FOREIGN: "x"}))
    with pytest.raises(ValueError, match="cpu key"):
        run(State(), ok_gpu({ZEN4: "8"}))


def test_source_of():
    assert source_of(MI300X) == GPU_SOURCE
    assert source_of(CPX) == GPU_SOURCE
    assert source_of(ZEN5) == CPU_SOURCE
    with pytest.raises(ValueError, match="not a detector label key"):
        source_of(NFD_CPU)


# --- node patches ---------------------------------------------------------------------------


def owned(*keys):
    return {OWNED_LABELS_ANNOTATION: ",".join(keys)}


def test_patch_for_a_fresh_node_sets_labels_and_the_annotation():
    patch = node_patch({FOREIGN: "n1"}, {}, {**GPU_8, **CPU_2S})
    assert patch == {
        "metadata": {
            "labels": {MI300X: "8", SPX: "8", ZEN4: "192"},
            "annotations": {OWNED_LABELS_ANNOTATION: ",".join(sorted([MI300X, SPX, ZEN4]))},
        }
    }


def test_no_patch_when_the_node_already_matches():
    current = {**GPU_8, FOREIGN: "n1"}
    assert node_patch(current, owned(MI300X, SPX), GPU_8) is None


def test_patch_deletes_stale_owned_keys_with_null_and_never_names_foreign_keys():
    current = {**GPU_8, **CPU_2S, FOREIGN: "n1", NFD_CPU: "true"}
    patch = node_patch(current, owned(ZEN4, MI300X, SPX), CPU_2S)
    assert patch == {
        "metadata": {
            "labels": {MI300X: None, SPX: None},
            "annotations": {OWNED_LABELS_ANNOTATION: ZEN4},
        }
    }


def test_patch_leaves_prefixed_keys_it_did_not_write():
    # Someone else (a person, or NFD) put an aim-accelerator label there: not ours to delete.
    current = {MI325X: "4", ZEN4: "192"}
    patch = node_patch(current, owned(ZEN4), CPU_2S)
    assert patch is None


def test_patch_adopts_an_equal_label_it_now_produces():
    patch = node_patch({MI300X: "8"}, {}, {MI300X: "8"})
    assert patch == {"metadata": {"annotations": {OWNED_LABELS_ANNOTATION: MI300X}}}


def test_patch_restores_a_value_someone_changed():
    patch = node_patch({MI300X: "3"}, owned(MI300X), {MI300X: "8"})
    assert patch == {"metadata": {"labels": {MI300X: "8"}}}


def test_cleanup_patch_removes_every_owned_label_and_the_annotation():
    current = {**GPU_8, FOREIGN: "n1"}
    patch = node_patch(current, owned(MI300X, SPX, ZEN4), {}, mark=False)
    assert patch == {
        "metadata": {
            "labels": {MI300X: None, SPX: None},
            "annotations": {OWNED_LABELS_ANNOTATION: None},
        }
    }
    assert node_patch({FOREIGN: "n1"}, {}, {}, mark=False) is None
    assert node_patch({FOREIGN: "n1"}, {OWNED_LABELS_ANNOTATION: ""}, {}, mark=False) == {
        "metadata": {"annotations": {OWNED_LABELS_ANNOTATION: None}}
    }


def test_finding_nothing_leaves_the_annotation_empty_as_the_mark_that_it_ran():
    """A publish of no labels keeps the ownership annotation, empty: "ran, found nothing" is
    visible on the Node, unlike "never ran" (no annotation)."""
    assert node_patch({FOREIGN: "n1"}, {}, {}) == {
        "metadata": {"annotations": {OWNED_LABELS_ANNOTATION: ""}}
    }
    assert node_patch({FOREIGN: "n1"}, {OWNED_LABELS_ANNOTATION: ""}, {}) is None
    patch = node_patch({**GPU_8, FOREIGN: "n1"}, owned(MI300X, SPX), {})
    assert patch == {
        "metadata": {
            "labels": {MI300X: None, SPX: None},
            "annotations": {OWNED_LABELS_ANNOTATION: ""},
        }
    }
    assert annotation_keys({OWNED_LABELS_ANNOTATION: ""}) == []


def test_patch_refuses_foreign_keys():
    with pytest.raises(ValueError, match="refusing"):
        node_patch({}, {}, {FOREIGN: "x"})


def test_annotation_parsing_tolerates_spaces_and_drops_foreign_keys():
    value = f" {MI300X} ,,{FOREIGN}, {ZEN4}"
    assert annotation_keys({OWNED_LABELS_ANNOTATION: value}) == [MI300X, ZEN4]
    assert annotation_keys(None) == []


def test_published_labels_are_the_annotated_keys_still_on_the_node():
    labels = {MI300X: "8", ZEN4: "192", MI325X: "4", FOREIGN: "n1"}
    assert published_labels(labels, owned(MI300X, ZEN4, SPX)) == {MI300X: "8", ZEN4: "192"}
    assert published_labels(labels, None) == {}


def test_a_cycle_with_a_failed_probe_leaves_the_mark_as_it_is():
    """mark=None: nothing owned and nothing known; an absent mark stays absent, an empty one
    stays, and owned labels are written as ever."""
    assert node_patch({FOREIGN: "n1"}, {}, {}, mark=None) is None
    assert node_patch({FOREIGN: "n1"}, {OWNED_LABELS_ANNOTATION: ""}, {}, mark=None) is None
    assert node_patch({}, {}, {MI300X: "8"}, mark=None) == {
        "metadata": {
            "labels": {MI300X: "8"},
            "annotations": {OWNED_LABELS_ANNOTATION: MI300X},
        }
    }
