"""AMD GPU PCI device ids -> the model ids we put in labels, and what a model's partitions are.

Data only (no I/O). The device ids come from the kernel's amdgpu tables and AMD's ROCm
documentation (see shared/reference/hardware-facts.md); SR-IOV virtual functions (VF) and the
HF variants map to the same model as the physical function, so a VM that is handed an MI300X VF
gets the same label as bare metal. A device id that is not here has no model: the probes log it
and the node gets no label for it, rather than a guessed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: AMD/ATI's PCI vendor id (GPUs). AMD CPUs and chipsets use 0x1022 instead.
AMD_GPU_VENDOR_ID = 0x1002

_MODELS: dict[str, tuple[int, ...]] = {
    "MI100": (0x738C, 0x738E),
    "MI250X": (0x7408, 0x740C),  # 0x740C covers MI250 and MI250X
    "MI210": (0x740F, 0x7410),  # 0x7410: VF
    "MI300A": (0x74A0,),
    "MI300X": (0x74A1, 0x74A9, 0x74B5, 0x74BD),  # 0x74A9/0x74BD: HF, 0x74B5: VF
    "MI308X": (0x74A2, 0x74A8, 0x74B6),  # 0x74A8: HF
    "MI325X": (0x74A5, 0x74B9),  # 0x74B9: VF
    "MI350X": (0x75A0, 0x75B0),  # 0x75B0: VF
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

#: PCI device id -> model id (``0x74A1`` -> ``MI300X``).
MODEL_BY_DEVICE_ID: Mapping[int, str] = MappingProxyType(
    {device_id: model for model, ids in _MODELS.items() for device_id in ids}
)

#: Accelerator complex dies (XCDs) per GPU for the models that can be compute-partitioned.
#: In CPX mode every XCD is its own logical GPU, so this is the CPX partition count.
XCD_COUNT: Mapping[str, int] = MappingProxyType(
    {"MI300X": 8, "MI325X": 8, "MI350X": 8, "MI355X": 8, "MI300A": 6, "MI308X": 4}
)

#: Logical GPUs per physical GPU in each compute-partition mode, except CPX (see XCD_COUNT).
#: TPX only exists on parts whose XCD count divides by three (MI300A).
_FIXED_PARTITIONS: Mapping[str, int] = MappingProxyType({"SPX": 1, "DPX": 2, "TPX": 3, "QPX": 4})

COMPUTE_PARTITIONS = frozenset({"SPX", "DPX", "TPX", "QPX", "CPX"})
MEMORY_PARTITIONS = frozenset({"NPS1", "NPS2", "NPS4", "NPS8"})


def model_for(device_id: int) -> str | None:
    """The label model for a PCI device id, or None when the id is not in our table."""
    return MODEL_BY_DEVICE_ID.get(device_id)


def partitions_for_mode(model: str | None, compute_partition: str | None) -> int | None:
    """Logical GPUs one physical GPU shows in a compute-partition mode.

    ``None`` mode (not partitionable) is one GPU. CPX needs the model's XCD count; for a model
    we do not know that for, the answer is None (unknown) rather than a guess.
    """
    if compute_partition is None:
        return 1
    fixed = _FIXED_PARTITIONS.get(compute_partition)
    if fixed is not None:
        return fixed
    if compute_partition == "CPX" and model is not None:
        return XCD_COUNT.get(model)
    return None
