"""What ``import amdsmi`` does when the pip package is installed but ROCm is not.

AMD's wrapper looks ``libamd_smi.so`` up in a dict of found libraries while importing; without
ROCm it prints a hint and the lookup raises ``KeyError('libamd_smi.so')``.
"""

import sys

print("Unable to find libamd_smi.so library try installing amd-smi-lib from your package manager")
sys.stdout.flush()
_libraries: dict[str, object] = {}
_libraries["libamd_smi.so"]
