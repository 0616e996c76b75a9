"""The functions of AMD's ``amdsmi`` the detector uses, with the real signatures and shapes.

Handles are ``amdsmi_wrapper.amdsmi_processor_handle`` objects (ctypes pointers) and functions
reject anything else with AmdSmiParameterException, as the real ones do. Every call before
``amdsmi_init`` or after ``amdsmi_shut_down`` raises AMDSMI_STATUS_NOT_INIT.
"""

from enum import IntEnum
from typing import Any

from . import amdsmi_wrapper
from .amdsmi_exception import AmdSmiLibraryException, AmdSmiParameterException
from .fake_config import STATE, load_environment


class AmdSmiInitFlags(IntEnum):
    INIT_ALL_PROCESSORS = amdsmi_wrapper.AMDSMI_INIT_ALL_PROCESSORS
    INIT_AMD_CPUS = amdsmi_wrapper.AMDSMI_INIT_AMD_CPUS
    INIT_AMD_GPUS = amdsmi_wrapper.AMDSMI_INIT_AMD_GPUS


_handles: dict[int, tuple[dict[str, Any], int]] = {}


def _require_init():
    if not STATE.initialized:
        raise AmdSmiLibraryException(amdsmi_wrapper.AMDSMI_STATUS_NOT_INIT)


def _lookup(handle):
    if not isinstance(handle, amdsmi_wrapper.amdsmi_processor_handle):
        raise AmdSmiParameterException(handle, amdsmi_wrapper.amdsmi_processor_handle)
    _require_init()
    try:
        return _handles[handle.value or 0]
    except KeyError:
        raise AmdSmiLibraryException(amdsmi_wrapper.AMDSMI_STATUS_NOT_FOUND) from None


def amdsmi_init(flag=AmdSmiInitFlags.INIT_AMD_GPUS):
    if not isinstance(flag, AmdSmiInitFlags):
        raise AmdSmiParameterException(flag, AmdSmiInitFlags)
    STATE.calls.append("amdsmi_init")
    load_environment()
    if STATE.init_error is not None:
        raise AmdSmiLibraryException(STATE.init_error)
    STATE.initialized = True
    _handles.clear()
    for gpu in STATE.gpus:
        for partition in range(int(gpu.get("partitions", 1))):
            _handles[0x1000 + len(_handles)] = (gpu, partition)


def amdsmi_shut_down():
    STATE.calls.append("amdsmi_shut_down")
    _require_init()
    STATE.initialized = False
    _handles.clear()


def amdsmi_get_processor_handles():
    STATE.calls.append("amdsmi_get_processor_handles")
    _require_init()
    if STATE.handles_error is not None:
        raise AmdSmiLibraryException(STATE.handles_error)
    return [amdsmi_wrapper.amdsmi_processor_handle(value) for value in _handles]


def amdsmi_get_gpu_device_bdf(processor_handle):
    gpu, partition = _lookup(processor_handle)
    domain, bus, rest = gpu["bdf"].split(":")
    device = rest.split(".")[0]
    return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{partition}"


def amdsmi_get_gpu_asic_info(processor_handle):
    gpu, _ = _lookup(processor_handle)
    return {
        "market_name": gpu.get("market_name") or "N/A",
        "vendor_id": hex(0x1002),
        "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
        "subvendor_id": hex(0x1002),
        "device_id": hex(gpu["device_id"]) if gpu.get("device_id") else "N/A",
        "rev_id": "0x00",
        "asic_serial": "0x0000000000000000",
        "oam_id": 0,
        "num_compute_units": gpu.get("compute_units", 304),
        "target_graphics_version": gpu.get("gfx", "gfx942"),
    }


def amdsmi_get_gpu_vram_info(processor_handle):
    gpu, _ = _lookup(processor_handle)
    return {
        "vram_type": 12,
        "vram_vendor": 0,
        "vram_size": gpu.get("vram_mb", 0),
        "vram_bit_width": 8192,
        "vram_max_bandwidth": "N/A",
    }


def _partition(processor_handle, key):
    gpu, _ = _lookup(processor_handle)
    value = gpu.get(key)
    if value is None:
        raise AmdSmiLibraryException(amdsmi_wrapper.AMDSMI_STATUS_NOT_SUPPORTED)
    return value


def amdsmi_get_gpu_compute_partition(processor_handle):
    return _partition(processor_handle, "compute_partition")


def amdsmi_get_gpu_memory_partition(processor_handle):
    return _partition(processor_handle, "memory_partition")
