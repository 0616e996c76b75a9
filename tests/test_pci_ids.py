"""The device-id table (detector.pci_ids): ids from amdgpu.ids, pci.ids, the kernel's pciidlist
and the ids ROCm's device plugin adds, and the evidence shared ids need (issue 10, defect 6)."""

from __future__ import annotations

import pytest

from detector.pci_ids import KNOWN_DEVICE_IDS, identify, partitions_for_mode


@pytest.mark.parametrize(
    ("device_id", "revision", "units", "product", "model"),
    [
        (0x74A1, 0x00, None, None, "MI300X"),
        (0x74B5, 0x00, None, None, "MI300X"),  # VF
        (0x74BC, 0x00, None, None, "MI308X"),  # HF VF (k8s-device-plugin's amdgpu.ids)
        (0x74A8, 0x00, None, None, "MI308X"),  # HF
        (0x75A8, 0x00, None, None, "MI350P"),
        (0x74B9, 0x00, None, None, "MI325X"),  # VF
        (0x7408, 0x00, None, None, "MI250X"),
        (0x740C, 0x01, 110, None, "MI250X"),  # 110 CUs per GCD
        (0x740C, 0x01, 104, None, "MI250"),  # 104 CUs per GCD
        (0x740C, 0x01, None, "AMD INSTINCT MI250X (MCM) OAM AC MBA MSFT", "MI250X"),
        (0x740C, 0x01, None, "AMD INSTINCT MI250 (MCM) OAM AC MBA", "MI250"),
        (0x740C, 0x01, None, None, "MI250"),  # no evidence: never the bigger part
        (0x66A1, 0x02, 60, None, "MI50"),
        (0x66A1, 0x02, 64, None, "MI60"),
        (0x66A0, 0x00, None, None, "MI50"),
        (0x66A1, 0x06, 60, None, None),  # Radeon Pro VII
        (0x6860, 0x01, None, None, "MI25"),
        (0x6860, 0x03, None, None, None),  # Radeon Pro V340
        (0x164E, 0x00, None, None, None),  # an integrated GPU
    ],
)
def test_identify(
    device_id: int, revision: int, units: int | None, product: str | None, model: str | None
) -> None:
    assert identify(device_id, revision, units, product) == model


def test_every_identified_id_is_listed_as_known() -> None:
    assert {0x740C, 0x66A0, 0x66A1, 0x6860, 0x74BC, 0x75A8} <= KNOWN_DEVICE_IDS


def test_the_table_is_the_last_resort_for_cpx_only() -> None:
    assert partitions_for_mode("MI300X", "CPX") == 8
    assert partitions_for_mode("MI350P", "CPX") == 4
    assert partitions_for_mode("MI300X", "DPX") == 2
    assert partitions_for_mode("RX7900", "CPX") is None
    assert partitions_for_mode("MI300X", "UNKNOWN") is None
