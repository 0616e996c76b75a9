"""AMD GPUs through AMD's ``amdsmi`` Python library (ROCm's libamd_smi.so).

``amdsmi`` is imported lazily, inside the probe: the agent runs fine without it. Its absence
(ImportError), a missing ``libamd_smi.so`` (the wrapper raises KeyError or OSError while
importing) and any ``amdsmi.AmdSmiException`` from ``amdsmi_init`` or the handle listing mean
"backend unavailable" (BackendUnavailable), logged once per reason per process. An import failure
is remembered, because retrying would only print the wrapper's message again every cycle; init
failures are not (the driver may finish loading later).

amdsmi lists one processor handle per partition (8 per MI300X in CPX mode), each with a BDF
whose function number is the partition; handles are grouped by BDF without the function bits,
so one group is one physical GPU and the group size is its partition count. The library reads
the real host, so the ``roots`` of the sysfs probe do not apply to it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from detector.facts import GPU_SOURCE, BackendUnavailable, GpuDevice, GpuFacts, ProbeError
from detector.pci_ids import COMPUTE_PARTITIONS, MEMORY_PARTITIONS, model_for

log = logging.getLogger(__name__)

SOURCE_NAME = "amdsmi"
_BDF_RE = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])")

_import_failure: str | None = None
_logged_reasons: set[str] = set()


def forget_import_failure() -> None:
    """Allow a new import attempt (tests swap the ``amdsmi`` module between cases)."""
    global _import_failure
    _import_failure = None


def _unavailable(reason: str, level: int = logging.WARNING) -> BackendUnavailable:
    if reason not in _logged_reasons:
        _logged_reasons.add(reason)
        log.log(level, "amdsmi backend unavailable: %s", reason)
    else:
        log.debug("amdsmi backend unavailable: %s", reason)
    return BackendUnavailable(SOURCE_NAME, reason)


def _import_amdsmi() -> ModuleType:
    global _import_failure
    if _import_failure is not None:
        raise _unavailable(_import_failure)
    # Without libamd_smi.so the wrapper prints its complaint to stdout before raising; stdout is
    # the dry run's output (JSON included), so catch what it prints and log it instead.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return importlib.import_module("amdsmi")
    except (ImportError, OSError, KeyError) as exc:
        said = " ".join(printed.getvalue().split())
        _import_failure = f"import amdsmi failed: {type(exc).__name__}: {exc}" + (
            f" (it printed: {said})" if said else ""
        )
        # Not installed at all is the normal case without ROCm: say so quietly.
        level = logging.INFO if type(exc) is ModuleNotFoundError else logging.WARNING
        raise _unavailable(_import_failure, level) from exc


def _device_id(value: object) -> int | None:
    """asic_info's ``device_id``: ``"0x74a1"`` in current amdsmi, an int in old releases."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value or None
    if isinstance(value, str):
        try:
            return int(value, 16) or None
        except ValueError:
            return None  # "N/A"
    return None


def _physical_bdf(bdf: object) -> str | None:
    match = _BDF_RE.fullmatch(str(bdf).strip())
    if match is None:
        return None
    domain, bus, device, _function = match.groups()
    return f"{domain}:{bus}:{device}.0".lower()


def _optional(call: Any, handle: object, error: type[Exception]) -> Any:
    """Per-handle queries that a GPU may not support (partitions on MI210): None then."""
    try:
        return call(handle)
    except error:
        return None


def _partition(value: object, allowed: frozenset[str]) -> str | None:
    text = str(value).strip().upper() if value is not None else ""
    return text if text in allowed else None


def _vram_mib(info: object) -> int | None:
    if not isinstance(info, Mapping):
        return None
    for key in ("vram_size", "vram_size_mb"):  # the name changed between amdsmi releases
        value = info.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _collect(amdsmi: Any, warnings: list[str]) -> tuple[GpuDevice, ...]:
    error = amdsmi.AmdSmiException
    try:
        handles = list(amdsmi.amdsmi_get_processor_handles())
    except error as exc:
        raise _unavailable(f"amdsmi_get_processor_handles failed: {exc}") from exc
    groups: dict[str, list[object]] = {}
    unread = 0  # handles and devices skipped because amdsmi could not say what they are
    for handle in handles:
        try:
            raw_bdf = amdsmi.amdsmi_get_gpu_device_bdf(handle)
        except error as exc:
            warnings.append(f"amdsmi handle skipped: no BDF ({exc})")
            unread += 1
            continue
        bdf = _physical_bdf(raw_bdf)
        if bdf is None:
            warnings.append(f"amdsmi handle skipped: malformed BDF {raw_bdf!r}")
            unread += 1
            continue
        groups.setdefault(bdf, []).append(handle)
    devices = []
    for bdf, group in sorted(groups.items()):
        first = group[0]  # partition 0 sorts first; every partition reports the same modes
        try:
            asic = amdsmi.amdsmi_get_gpu_asic_info(first)
        except error as exc:
            warnings.append(f"{bdf} skipped: amdsmi_get_gpu_asic_info failed ({exc})")
            unread += 1
            continue
        device_id = _device_id(asic.get("device_id"))
        if device_id is None:
            warnings.append(f"{bdf} skipped: no device id in asic info ({asic.get('device_id')!r})")
            unread += 1
            continue
        model = model_for(device_id)
        if model is None:
            warnings.append(
                f"{bdf}: unknown AMD device id 0x{device_id:04x} "
                f"({asic.get('market_name')!r}), no model label"
            )
        compute = _optional(amdsmi.amdsmi_get_gpu_compute_partition, first, error)
        memory = _optional(amdsmi.amdsmi_get_gpu_memory_partition, first, error)
        vram = _optional(amdsmi.amdsmi_get_gpu_vram_info, first, error)
        devices.append(
            GpuDevice(
                bdf=bdf,
                device_id=device_id,
                model=model,
                compute_partition=_partition(compute, COMPUTE_PARTITIONS),
                memory_partition=_partition(memory, MEMORY_PARTITIONS),
                partitions=len(group),
                vram_mib=_vram_mib(vram),
            )
        )
    if unread:
        # One GPU (or partition) left out would change the labels from a read error: fail the
        # probe so that the agent keeps its last good GPU labels.
        for message in warnings:
            log.warning("%s", message)
        what = "none could be read" if not devices else f"{unread} could not be read"
        raise ProbeError(GPU_SOURCE, f"amdsmi listed GPUs but {what}: {'; '.join(warnings)}")
    return tuple(devices)


def probe_amdsmi_gpus() -> GpuFacts:
    """The host's AMD GPUs as amdsmi sees them. Raises BackendUnavailable."""
    amdsmi: Any = _import_amdsmi()
    error = getattr(amdsmi, "AmdSmiException", None)
    if not (isinstance(error, type) and issubclass(error, Exception)):
        raise _unavailable("the amdsmi module has no AmdSmiException: not AMD's amdsmi")
    try:
        amdsmi.amdsmi_init()
    except error as exc:
        raise _unavailable(f"amdsmi_init failed: {exc}") from exc
    warnings: list[str] = []
    try:
        devices = _collect(amdsmi, warnings)
    finally:
        try:
            amdsmi.amdsmi_shut_down()
        except error as exc:
            log.warning("amdsmi_shut_down failed: %s", exc)
    for message in warnings:
        log.warning("%s", message)
    return GpuFacts(source=SOURCE_NAME, devices=devices, warnings=tuple(warnings))
