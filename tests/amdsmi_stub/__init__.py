"""Builds the C stand-in for ROCm's ``libamd_smi.so`` (libamd_smi_stub.c) with the machine's gcc.

``build_rocm(dest)`` lays out ``dest`` the way a ROCm install is laid out for the wrapper:
``dest/lib/libamd_smi.so`` and ``dest/.info/version``. Point the real ``amdsmi`` package at it
with ``ROCM_PATH=dest`` (the first place its ``find_smi_library`` looks) and describe the host
in a file named by ``AMDSMI_STUB_HOST`` (format: libamd_smi_stub.c).

The library exports every symbol of ``api.txt`` (what the amdsmi 7.0.2 wrapper binds when it is
imported): the ones libamd_smi_stub.c implements, and for all others a generated function that
returns AMDSMI_STATUS_NOT_SUPPORTED. ``omit`` leaves symbols out, to build a library older than
the wrapper (the wrapper then fails to import with ``undefined symbol``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = HERE / "libamd_smi_stub.c"
API = HERE / "api.txt"
HOST_ENV = "AMDSMI_STUB_HOST"
#: The ROCm release whose wrapper api.txt was taken from.
ROCM_VERSION = "7.0.2-56"


class BuildError(RuntimeError):
    pass


def api_symbols() -> list[str]:
    """The symbols of api.txt, in order."""
    lines = API.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def implemented_symbols() -> set[str]:
    """The amdsmi functions libamd_smi_stub.c defines itself."""
    return set(re.findall(r"^amdsmi_status_t (amdsmi_\w+)\(", SOURCE.read_text(), re.M))


def _unsupported_source(symbols: Iterable[str]) -> str:
    lines = ['#include "amdsmi_abi.h"', ""]
    lines += [f"amdsmi_status_t {name}(void) {{ return AMDSMI_STATUS_NOT_SUPPORTED; }}"
              for name in symbols]  # fmt: skip
    return "\n".join(lines) + "\n"


def build_rocm(dest: Path, omit: Iterable[str] = (), rocm_version: str = ROCM_VERSION) -> Path:
    """Compile the stand-in into ``dest/lib/libamd_smi.so``; returns ``dest`` (a ROCM_PATH)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise BuildError("no C compiler (gcc or cc) on PATH")
    omitted = set(omit)
    implemented = implemented_symbols()
    unknown = omitted - set(api_symbols())
    if unknown:
        raise BuildError(f"cannot omit symbols the wrapper does not bind: {sorted(unknown)}")
    generated = [s for s in api_symbols() if s not in implemented and s not in omitted]
    work = dest / "build"
    work.mkdir(parents=True, exist_ok=True)
    (work / "unsupported.c").write_text(_unsupported_source(generated))
    source = work / "implemented.c"
    text = SOURCE.read_text()
    for name in omitted & implemented:  # drop the definition by renaming it out of the ABI
        text = re.sub(
            rf"^(amdsmi_status_t ){name}\(", rf"static \1omitted_{name}(", text, flags=re.M
        )
    source.write_text(text)
    lib = dest / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    objects = [str(source), str(work / "unsupported.c")]
    command = [gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Wno-unused-function", f"-I{HERE}",
               "-o", str(lib / "libamd_smi.so"), *objects]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed:\n{done.stderr}")
    (dest / ".info").mkdir(exist_ok=True)
    (dest / ".info" / "version").write_text(rocm_version + "\n")
    return dest
