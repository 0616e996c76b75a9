"""How a test tells the stand-in ``amdsmi`` which GPUs to report.

Either call ``configure(gpus=[...])`` in-process, or set ``AMDSMI_FAKE_CONFIG`` to a JSON object
(or to the path of a JSON file) for a subprocess; ``amdsmi_init()`` reads the environment
variable when ``configure`` was not called. A GPU is a dict::

    {"bdf": "0000:05:00.0", "device_id": 0x74A1, "market_name": "AMD Instinct MI300X",
     "compute_partition": "CPX", "memory_partition": "NPS4", "vram_mb": 196592, "partitions": 8}

``compute_partition``/``memory_partition`` None means the GPU cannot be partitioned (the real
library then raises AMDSMI_STATUS_NOT_SUPPORTED). ``partitions`` is how many handles the GPU
shows: one per partition, with the partition number in the BDF's function bits, as the real
library does in CPX mode. ``init_error`` (an AMDSMI status code) makes ``amdsmi_init`` fail;
``handles_error`` makes ``amdsmi_get_processor_handles`` fail.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV = "AMDSMI_FAKE_CONFIG"


@dataclass
class FakeState:
    gpus: list[dict[str, Any]] = field(default_factory=list)
    init_error: int | None = None
    handles_error: int | None = None
    configured: bool = False
    initialized: bool = False
    calls: list[str] = field(default_factory=list)


STATE = FakeState()


def configure(gpus=(), init_error=None, handles_error=None):
    STATE.gpus = [dict(gpu) for gpu in gpus]
    STATE.init_error = init_error
    STATE.handles_error = handles_error
    STATE.configured = True
    STATE.initialized = False
    STATE.calls.clear()


def load_environment():
    if STATE.configured:
        return
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        configure()
        return
    data = json.loads(raw if raw.startswith("{") else Path(raw).read_text())
    configure(data.get("gpus", ()), data.get("init_error"), data.get("handles_error"))
