"""The stand-in's ctypes layer: only what the interface needs (handle type, status codes)."""

import ctypes

AMDSMI_STATUS_SUCCESS = 0
AMDSMI_STATUS_INVAL = 1
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_NO_PERM = 10
AMDSMI_STATUS_INIT_ERROR = 18
AMDSMI_STATUS_NOT_FOUND = 31
AMDSMI_STATUS_NOT_INIT = 32
AMDSMI_STATUS_DRIVER_NOT_LOADED = 34

AMDSMI_INIT_ALL_PROCESSORS = 0xFFFFFFFF
AMDSMI_INIT_AMD_CPUS = 1 << 0
AMDSMI_INIT_AMD_GPUS = 1 << 1


class amdsmi_processor_handle(ctypes.c_void_p):
    pass
