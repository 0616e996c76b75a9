"""An ``amdsmi`` package as installed by pip on a host without ROCm (no libamd_smi.so)."""
