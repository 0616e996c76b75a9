"""AMD CPU family/model -> Zen generation, as the Linux kernel decides it.

Exactly the ranges of ``arch/x86/kernel/cpu/amd.c`` (``bsp_init_amd``'s ``X86_FEATURE_ZEN*``
selection). Data and one lookup; no I/O. Unknown family/model pairs are "unknown generation"
(None), never an error: a CPU newer than this table simply gets no EPYC label until the table
learns it.
"""

from __future__ import annotations

#: (family, first model, last model, generation), inclusive ranges.
ZEN_RANGES: tuple[tuple[int, int, int, str], ...] = (
    (0x17, 0x00, 0x2F, "ZEN1"),
    (0x17, 0x50, 0x5F, "ZEN1"),
    (0x17, 0x30, 0x4F, "ZEN2"),
    (0x17, 0x60, 0x7F, "ZEN2"),
    (0x17, 0x90, 0x91, "ZEN2"),
    (0x17, 0xA0, 0xAF, "ZEN2"),
    (0x19, 0x00, 0x0F, "ZEN3"),
    (0x19, 0x20, 0x5F, "ZEN3"),
    (0x19, 0x10, 0x1F, "ZEN4"),
    (0x19, 0x60, 0xAF, "ZEN4"),
    (0x1A, 0x00, 0x2F, "ZEN5"),
    (0x1A, 0x40, 0x4F, "ZEN5"),
    (0x1A, 0x60, 0x7F, "ZEN5"),
    (0x1A, 0x50, 0x5F, "ZEN6"),
    (0x1A, 0x80, 0xAF, "ZEN6"),
    (0x1A, 0xC0, 0xCF, "ZEN6"),
)


def zen_generation(family: int | None, model: int | None) -> str | None:
    """``(25, 0x11)`` -> ``"ZEN4"``; None for anything the table does not cover."""
    if family is None or model is None:
        return None
    for fam, first, last, generation in ZEN_RANGES:
        if family == fam and first <= model <= last:
            return generation
    return None
