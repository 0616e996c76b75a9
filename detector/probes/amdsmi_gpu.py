"""AMD GPUs through AMD's ``amdsmi`` Python wrapper around ROCm's ``libamd_smi.so``.

``amdsmi`` is imported lazily, inside the probe: the agent runs fine without it. Whether it can
be used is decided once per process, the first time it is asked for: any failure to import it
(not installed; ``KeyError``/``OSError`` without ``libamd_smi.so``; ``AttributeError:
undefined symbol`` when the wrapper is newer than the library, as 7.0.2 on ROCm 6.4), a wrapper
that does not match the library (:func:`check_install`), or a failed ``amdsmi_init`` makes it
unavailable for good (BackendUnavailable, logged once): retrying would print the wrapper's
complaint every cycle, and the sysfs probe needs no library.

The wrapper ROCm installs beside its library (``<rocm>/share/amd_smi``) is preferred to one
installed with pip (the PyPI ``amdsmi`` is a community redistribution of AMD's wrapper, cut
from one ROCm release), and the pair is checked once, at the first import.

amdsmi lists one processor handle per partition, with the partition id in the BDF's function
bits (older drivers) or not at all (newer ones put it in bits [31:28] of the KFD location id, which
the wrapper's BDF drops). Handles are grouped by domain:bus:device, so a group is one physical GPU
and its size the partition count.

What a handle says is recorded as it is; whatever makes the reading not self-consistent (a
zero or malformed BDF, an unreadable handle) goes to ``problems``. The GPU probe cross-checks
every reading against the PCI scan before trusting it (detector.probes.crosscheck): inside a pod
the library silently lists only the GPUs the device cgroup allows.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from detector.facts import BackendUnavailable
from detector.pci_ids import COMPUTE_PARTITIONS, MEMORY_PARTITIONS, UNKNOWN_MODE

log = logging.getLogger(__name__)

SOURCE_NAME = "amdsmi"
#: AMDSMI_STATUS_NOT_SUPPORTED (amdsmi.h): the GPU cannot be partitioned (MI210, Radeon).
STATUS_NOT_SUPPORTED = 2
_BDF_RE = re.compile(r"([0-9a-fA-F]{4,}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])")
_ZERO_KEY = (0, 0, 0)

_disabled: str | None = None
"""Why amdsmi is not used in this process (decided once); None while it may be."""
_install: InstallCheck | None = None


@dataclass(frozen=True, slots=True)
class InstallCheck:
    """Where the wrapper and the library it loaded come from, and whether they belong together."""

    wrapper_path: str
    wrapper_version: str | None
    library_path: str | None
    rocm_version: str | None
    """The ROCm release of the library's install (``<prefix>/.info/version``)."""
    library_version: str | None
    """``amdsmi_get_lib_version`` of the library itself."""
    bundled: bool
    """The wrapper is the one shipped with that library (``<prefix>/share/amd_smi``)."""
    mismatch: str | None
    """Why they do not belong together; None when they do or it cannot be told."""


@dataclass(frozen=True, slots=True)
class AmdsmiGpu:
    """One physical GPU as amdsmi reports it (its handles grouped)."""

    bdf: str
    device_id: int | None
    revision: int | None
    compute_units: int | None
    market_name: str
    compute_partition: str | None
    memory_partition: str | None
    partitions: int
    vram_mib: int | None

    @property
    def physical_key(self) -> tuple[int, int, int]:
        domain, bus, rest = self.bdf.split(":")
        return (int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16))


@dataclass(frozen=True, slots=True)
class AmdsmiReading:
    gpus: tuple[AmdsmiGpu, ...]
    problems: tuple[str, ...] = ()
    """What makes the reading unusable as it stands (zero BDF, unreadable handles)."""


def reset() -> None:
    """Forget the once-per-process decision (tests swap libraries and wrappers)."""
    global _disabled, _install
    _disabled = None
    _install = None


def install_check() -> InstallCheck | None:
    """The result of the start-up check, once amdsmi has been imported."""
    return _install


def _unavailable(reason: str, level: int = logging.WARNING) -> BackendUnavailable:
    global _disabled
    if _disabled is None:
        _disabled = reason
        log.log(level, "amdsmi backend unavailable, using sysfs from now on: %s", reason)
    return BackendUnavailable(SOURCE_NAME, reason)


def _rocm_version(prefix: Path) -> str | None:
    try:
        text = (prefix / ".info" / "version").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text.split("-")[0] or None


def _major_minor(version: str | None) -> tuple[str, ...] | None:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return match.groups() if match else None


def _loaded_library(amdsmi: Any) -> str | None:
    """The libamd_smi.so the wrapper loaded: the path it found (its ``location``), or, when it
    asked the dynamic linker for a bare name, the one this process mapped."""
    location = str(getattr(getattr(amdsmi, "amdsmi_wrapper", None), "location", "") or "")
    if "/" in location:
        return str(Path(location).resolve())
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                if path.endswith("/libamd_smi.so") or "/libamd_smi.so." in path:
                    return path
    except OSError:
        pass
    return None


def _library_version(amdsmi: Any) -> str | None:
    try:
        version = amdsmi.amdsmi_get_lib_version()
        return f"{version['major']}.{version['minor']}.{version['release']}"
    except Exception:  # an old library without the call: the version is only informational
        return None


def check_install(amdsmi: Any) -> InstallCheck:
    """Does the wrapper belong to the library it loaded? (Symbols alone do not tell.)

    A wrapper reads the library's structs with its own idea of their layout, so a wrapper and a
    library of different ROCm releases can misread them even when every symbol binds. They
    belong together when the wrapper is the one ROCm installs beside the library
    (``<prefix>/share/amd_smi``), or when the wrapper's release equals the ROCm release of the
    library's prefix (``<prefix>/.info/version``) in major.minor. When neither can be read the
    pair is used, with a warning: the cross-check against PCI still guards the labels.
    """
    wrapper_dir = Path(amdsmi.__file__).resolve().parent
    wrapper_version = getattr(amdsmi, "__version__", None)
    library = _loaded_library(amdsmi)
    rocm = bundled = None
    if library is not None:
        prefix = Path(library).resolve().parent.parent
        rocm = _rocm_version(prefix)
        bundled = wrapper_dir.is_relative_to((prefix / "share" / "amd_smi").resolve())
    mismatch = None
    if not bundled:
        want, have = _major_minor(wrapper_version), _major_minor(rocm)
        if want and have and want != have:
            mismatch = (
                f"the amdsmi wrapper {wrapper_version} at {wrapper_dir} does not match ROCm "
                f"{rocm} of {library}; use the wrapper ROCm ships in <rocm>/share/amd_smi"
            )
    return InstallCheck(
        wrapper_path=str(wrapper_dir),
        wrapper_version=wrapper_version,
        library_path=library,
        rocm_version=rocm,
        library_version=_library_version(amdsmi),
        bundled=bool(bundled),
        mismatch=mismatch,
    )


def rocm_wrapper_dir() -> Path | None:
    """The wrapper ROCm installs beside its library, ``<prefix>/share/amd_smi``, if any.

    The prefixes are the ones the wrapper itself searches for the library, in its order:
    ``$ROCM_HOME``, ``$ROCM_PATH``, ``/opt/rocm``.
    """
    for prefix in (os.environ.get("ROCM_HOME"), os.environ.get("ROCM_PATH"), "/opt/rocm"):
        if prefix:
            candidate = Path(prefix) / "share" / "amd_smi"
            if (candidate / "amdsmi" / "__init__.py").is_file():
                return candidate
    return None


def _prefer_rocm_wrapper() -> None:
    """Put ROCm's own wrapper ahead of an installed one (the PyPI package is a community
    redistribution, cut from one ROCm release: it matches only that release's library)."""
    wrapper = rocm_wrapper_dir()
    if wrapper is not None and str(wrapper) not in sys.path:
        sys.path.insert(0, str(wrapper))


def _import_amdsmi() -> ModuleType:
    global _install
    if _disabled is not None:
        raise BackendUnavailable(SOURCE_NAME, _disabled)
    _prefer_rocm_wrapper()
    # Without libamd_smi.so the wrapper prints its complaint to stdout before raising; stdout is
    # the dry run's output (JSON included), so catch what it prints and log it instead.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            module = importlib.import_module("amdsmi")
    except Exception as exc:  # ImportError, KeyError, OSError, AttributeError (undefined symbol)
        said = " ".join(printed.getvalue().split())
        reason = f"import amdsmi failed: {type(exc).__name__}: {exc}" + (
            f" (it printed: {said})" if said else ""
        )
        # Not installed at all is the normal case without ROCm: say so quietly.
        level = logging.INFO if type(exc) is ModuleNotFoundError else logging.WARNING
        raise _unavailable(reason, level) from exc
    error = getattr(module, "AmdSmiException", None)
    if not (isinstance(error, type) and issubclass(error, Exception)):
        raise _unavailable("the amdsmi module has no AmdSmiException: not AMD's amdsmi")
    if _install is None:
        _install = check_install(module)
        if _install.mismatch is not None:
            raise _unavailable(_install.mismatch)
        log.info(
            "amdsmi wrapper %s at %s, library %s (ROCm %s, library %s)%s",
            _install.wrapper_version,
            _install.wrapper_path,
            _install.library_path,
            _install.rocm_version or "unknown",
            _install.library_version or "unknown",
            "" if _install.bundled or _install.rocm_version else ": cannot tell whether they match",
        )
    return module


def _physical_key(raw: object) -> tuple[int, int, int] | None:
    match = _BDF_RE.fullmatch(str(raw).strip())
    if match is None:
        return None
    domain, bus, device, _function = match.groups()
    return (int(domain, 16), int(bus, 16), int(device, 16))


def _hex_id(value: object) -> int | None:
    """asic_info ids: ``"0x74a1"`` in current amdsmi (``"N/A"`` for 0), an int in old releases."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value or None
    if isinstance(value, str):
        try:
            return int(value, 16) or None
        except ValueError:
            return None
    return None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _mode(call: Any, handle: object, error: type[Exception], known: frozenset[str]) -> str | None:
    """A partition query: None when the GPU cannot be partitioned (NOT_SUPPORTED); UNKNOWN for
    any other failure or a value that is not a mode we know (as the sysfs probe does)."""
    try:
        value = str(call(handle)).strip().upper()
    except error as exc:
        return None if getattr(exc, "err_code", None) == STATUS_NOT_SUPPORTED else UNKNOWN_MODE
    return value if value in known else UNKNOWN_MODE


def _vram_mib(amdsmi: Any, handle: object, error: type[Exception]) -> int | None:
    try:
        info = amdsmi.amdsmi_get_gpu_vram_info(handle)
    except error:
        return None
    for key in ("vram_size", "vram_size_mb"):  # the name changed between amdsmi releases
        value = _count(info.get(key)) if isinstance(info, dict) else None
        if value is not None:
            return value
    return None


def _read_group(
    amdsmi: Any, key: tuple[int, int, int], handles: list[object], problems: list[str]
) -> AmdsmiGpu | None:
    error = amdsmi.AmdSmiException
    bdf = f"{key[0]:04x}:{key[1]:02x}:{key[2]:02x}.0"
    infos = []
    for handle in handles:
        try:
            infos.append(amdsmi.amdsmi_get_gpu_asic_info(handle))
        except error as exc:
            problems.append(f"{bdf}: amdsmi_get_gpu_asic_info failed ({exc})")
            return None
    first = infos[0]
    units = [_count(info.get("num_compute_units")) for info in infos]
    device_id = _hex_id(first.get("device_id"))
    if device_id is None:
        problems.append(f"{bdf}: no device id in asic info ({first.get('device_id')!r})")
    head = handles[0]  # partition 0; every partition reports the same modes
    return AmdsmiGpu(
        bdf=bdf,
        device_id=device_id,
        revision=_hex_id(first.get("rev_id")),
        compute_units=sum(u for u in units if u) if all(units) else None,
        market_name=str(first.get("market_name", "")),
        compute_partition=_mode(
            amdsmi.amdsmi_get_gpu_compute_partition, head, error, COMPUTE_PARTITIONS
        ),
        memory_partition=_mode(
            amdsmi.amdsmi_get_gpu_memory_partition, head, error, MEMORY_PARTITIONS
        ),
        partitions=len(handles),
        vram_mib=_vram_mib(amdsmi, head, error),
    )


def _collect(amdsmi: Any) -> AmdsmiReading:
    error = amdsmi.AmdSmiException
    try:
        handles = list(amdsmi.amdsmi_get_processor_handles())
    except error as exc:
        raise _unavailable(f"amdsmi_get_processor_handles failed: {exc}") from exc
    groups: dict[tuple[int, int, int], list[object]] = {}
    problems: list[str] = []
    for handle in handles:
        try:
            raw = amdsmi.amdsmi_get_gpu_device_bdf(handle)
        except error as exc:
            problems.append(f"a handle has no BDF ({exc})")
            continue
        key = _physical_key(raw)
        if key is None:
            problems.append(f"malformed BDF {raw!r}")
        elif key == _ZERO_KEY:
            # Older libraries leave the BDF zeroed when a render node cannot be opened; grouping
            # on it would merge GPUs.
            problems.append(f"zero BDF {raw!r} (the library could not open a render node?)")
        else:
            groups.setdefault(key, []).append(handle)
    gpus = []
    for key, group in sorted(groups.items()):
        gpu = _read_group(amdsmi, key, group, problems)
        if gpu is not None:
            gpus.append(gpu)
    return AmdsmiReading(gpus=tuple(gpus), problems=tuple(problems))


def probe_amdsmi() -> AmdsmiReading:
    """What amdsmi lists. Raises BackendUnavailable (for the rest of the process)."""
    amdsmi: Any = _import_amdsmi()
    error = amdsmi.AmdSmiException
    try:
        amdsmi.amdsmi_init()
    except error as exc:
        raise _unavailable(f"amdsmi_init failed: {exc}") from exc
    try:
        return _collect(amdsmi)
    finally:
        try:
            amdsmi.amdsmi_shut_down()
        except error as exc:
            log.warning("amdsmi_shut_down failed: %s", exc)
