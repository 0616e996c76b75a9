"""A stand-in for AMD's ``amdsmi`` Python package (tests only).

Same module layout, function names, return shapes and exception classes as the real package for
the calls the detector makes; the GPUs it reports are set with ``amdsmi.fake_config.configure``
or the ``AMDSMI_FAKE_CONFIG`` environment variable. Tests put ``tests/fakes`` on ``sys.path``.
"""

from . import fake_config
from .amdsmi_exception import (
    AmdSmiException,
    AmdSmiLibraryException,
    AmdSmiParameterException,
    AmdSmiRetCode,
)
from .amdsmi_interface import (
    AmdSmiInitFlags,
    amdsmi_get_gpu_asic_info,
    amdsmi_get_gpu_compute_partition,
    amdsmi_get_gpu_device_bdf,
    amdsmi_get_gpu_memory_partition,
    amdsmi_get_gpu_vram_info,
    amdsmi_get_processor_handles,
    amdsmi_init,
    amdsmi_shut_down,
)

__all__ = [
    "AmdSmiException",
    "AmdSmiInitFlags",
    "AmdSmiLibraryException",
    "AmdSmiParameterException",
    "AmdSmiRetCode",
    "amdsmi_get_gpu_asic_info",
    "amdsmi_get_gpu_compute_partition",
    "amdsmi_get_gpu_device_bdf",
    "amdsmi_get_gpu_memory_partition",
    "amdsmi_get_gpu_vram_info",
    "amdsmi_get_processor_handles",
    "amdsmi_init",
    "amdsmi_shut_down",
    "fake_config",
]
