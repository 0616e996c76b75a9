"""AMD GPU PCI device ids -> the model ids we put in labels, and what a model's partitions are.

Data only (no I/O). Sources: the kernel's amdgpu ``pciidlist``, libdrm's ``amdgpu.ids`` (ids
with product names), pci.ids and the extra ids ROCm's k8s-device-plugin appends to its
``amdgpu.ids`` (0x74B9 MI325X VF, 0x74BC MI308X HF VF, 0x738E MI100). SR-IOV virtual functions
(VF) and host-facing (HF) ids map to the model of the physical function, so a VM handed an MI300X
VF gets the same label as bare metal. An id that is not here has no model: the probes log it and
the node gets no label for it, rather than a guessed one.

Some ids name more than one product, and :func:`identify` tells them apart only with evidence:

* ``0x740C`` is "MI250X / MI250" (amdgpu.ids). Every MI250(X) module is two GCDs, two PCI
  devices; a GCD of an MI250X has 110 compute units, one of an MI250 104. With the CU count (KFD
  or amdsmi) or the board's FRU ``product_name`` naming the part, the model is exact; without,
  it is ``MI250``, which never claims the bigger part (an MI250X profile then does not match,
  an MI250 one does, and an MI250X runs everything an MI250 does).
* ``0x66A0``/``0x66A1`` (Vega 20) are the MI50 (60 CUs) and MI60 (64 CUs), and revision 0x06 of
  ``0x66A1`` is the Radeon Pro VII, a workstation card (no label). Without a CU count: ``MI50``.
* ``0x6860``/``0x6864``/``0x686C`` (Vega 10) are MI25 only at the revisions amdgpu.ids lists for
  it; the same ids carry Radeon Pro V320/V340/WX cards at other revisions.

GPUs are counted per PCI device, like AMD's device plugin (``amd.com/gpu``): four MI250X
modules are eight devices, ``MI250X=8``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: AMD/ATI's PCI vendor id (GPUs). AMD CPUs and chipsets use 0x1022 instead.
AMD_GPU_VENDOR_ID = 0x1002

_MODELS: dict[str, tuple[int, ...]] = {
    "MI100": (0x738C, 0x738E),
    "MI250X": (0x7408,),  # 0x740C: see identify()
    "MI210": (0x740F, 0x7410),  # 0x7410: Aldebaran in the kernel's pciidlist, no product name
    "MI300A": (0x74A0,),
    "MI300X": (0x74A1, 0x74A9, 0x74B5, 0x74BD),  # 0x74A9/0x74BD: HF, 0x74B5: VF
    "MI308X": (0x74A2, 0x74A8, 0x74B6, 0x74BC),  # 0x74A8: HF, 0x74BC: HF VF
    "MI325X": (0x74A5, 0x74B9),  # 0x74B9: VF
    "MI350X": (0x75A0, 0x75B0),  # 0x75B0: VF
    "MI350P": (0x75A8,),  # PCIe card, 4 XCDs
    "MI355X": (0x75A3, 0x75B3),  # 0x75B3: VF
    "V710": (0x7460, 0x7461),
    "W7900": (0x7448, 0x744A),
    "W7800": (0x7449, 0x745E),
    "V620": (0x73A1, 0x73AE),
    "W6900X": (0x73A2,),
    "W6800": (0x73A3,),
    "RX7900": (0x744C,),
    "RX9070": (0x7550,),
}

#: PCI device id -> model id (``0x74A1`` -> ``MI300X``), for the ids that name one product.
MODEL_BY_DEVICE_ID: Mapping[int, str] = MappingProxyType(
    {device_id: model for model, ids in _MODELS.items() for device_id in ids}
)

_MI250_FAMILY = 0x740C
_VEGA20 = (0x66A0, 0x66A1)
_RADEON_PRO_VII = (0x66A1, 0x06)
#: (device id, revision) pairs amdgpu.ids names "Radeon Instinct MI25" (MI25x2 and MxGPU too).
_MI25 = frozenset(
    {(0x6860, r) for r in (0x00, 0x01, 0x02, 0x04)}
    | {(0x6864, 0x04)}
    | {(0x686C, r) for r in (0x00, 0x01, 0x02, 0x04, 0x06)}
)

#: Every device id identify() may give a model to.
KNOWN_DEVICE_IDS = frozenset(
    set(MODEL_BY_DEVICE_ID) | {_MI250_FAMILY, *_VEGA20} | {d for d, _ in _MI25}
)

#: Accelerator compute dies (XCCs) of a full part of each partitionable model: the CPX partition
#: count of bare metal. Last resort only: a VF or a cut-down part has fewer, so the probes count
#: the partitions the device shows and use this when nothing on the host can be counted.
XCD_COUNT: Mapping[str, int] = MappingProxyType(
    {
        "MI300X": 8,
        "MI325X": 8,
        "MI350X": 8,
        "MI355X": 8,
        "MI300A": 6,
        "MI308X": 4,
        "MI350P": 4,
    }
)

#: What the kernel writes to ``current_compute_partition`` (amdgpu_gfx_compute_mode_desc)
#: and ``current_memory_partition`` (nps_desc), besides ``UNKNOWN``.
COMPUTE_PARTITIONS = frozenset({"SPX", "DPX", "TPX", "QPX", "CPX"})
MEMORY_PARTITIONS = frozenset({"NPS1", "NPS2", "NPS3", "NPS4", "NPS6", "NPS8"})
#: A partitionable GPU whose mode is not known: the kernel's ``UNKNOWN`` (mid-switch, or a mode
#: it cannot name) or a value this table does not know yet. Drops that GPU's partition label.
UNKNOWN_MODE = "UNKNOWN"

#: Logical GPUs per physical GPU in the modes where the number is fixed by the mode itself
#: (``__aqua_vanjaram_get_px_mode_info``). CPX has one per XCC the device has.
_FIXED_PARTITIONS: Mapping[str, int] = MappingProxyType({"SPX": 1, "DPX": 2, "TPX": 3, "QPX": 4})


def model_for(device_id: int) -> str | None:
    """The label model for a device id that names one product; None otherwise."""
    return MODEL_BY_DEVICE_ID.get(device_id)


def identify(
    device_id: int,
    revision: int | None = None,
    compute_units: int | None = None,
    product_name: str | None = None,
) -> str | None:
    """The label model for a device, using the evidence an ambiguous id needs (module docstring).

    ``compute_units`` is the device's total (all of its partitions); ``product_name`` the FRU
    string the kernel exposes in ``product_name`` (``AMD INSTINCT MI250X (MCM) OAM ...``).
    """
    model = MODEL_BY_DEVICE_ID.get(device_id)
    if model is not None:
        return model
    if device_id == _MI250_FAMILY:
        name = (product_name or "").upper().replace(" ", "")
        if compute_units == 110 or "MI250X" in name:
            return "MI250X"
        return "MI250"  # 104 CUs, an "MI250" FRU name, or no evidence: never claim the X
    if device_id in _VEGA20:
        if (device_id, revision) == _RADEON_PRO_VII:
            return None
        return "MI60" if compute_units == 64 else "MI50"
    if revision is not None and (device_id, revision) in _MI25:
        return "MI25"
    return None


def fixed_partitions(compute_partition: str | None) -> int | None:
    """Partitions a GPU shows in a mode that fixes the number; None for CPX and unknown modes.

    No mode at all (a GPU that cannot be partitioned) is one GPU.
    """
    if compute_partition is None:
        return 1
    return _FIXED_PARTITIONS.get(compute_partition)


def partitions_for_mode(model: str | None, compute_partition: str | None) -> int | None:
    """Logical GPUs one full part of ``model`` shows in a compute-partition mode (the table).

    CPX takes the model's XCD count (a full part only); None when that is not known.
    """
    fixed = fixed_partitions(compute_partition)
    if fixed is not None:
        return fixed
    if compute_partition == "CPX" and model is not None:
        return XCD_COUNT.get(model)
    return None
