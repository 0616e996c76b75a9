"""Kubernetes resource quantities, parsed exactly (``500m``, ``64Gi``, ``1e3``, ``2k``).

Mirrors ``k8s.io/apimachinery/pkg/api/resource.ParseQuantity``: an optional sign, a decimal
number, then one suffix: binary (``Ki`` .. ``Ei``), decimal (``n u m k M G T P E``) or a
decimal exponent (``e3``, ``E-2``). Values are exact ``Fraction``s so that comparisons never
suffer float rounding; like Kubernetes, precision below a nano-unit is rounded up (away from
zero) to the next nano.

Pure: no I/O.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# Sign, digits with an optional fraction (``1``, ``1.5``, ``1.``, ``.5``), then the suffix.
_QUANTITY_RE = re.compile(r"^([+-]?)([0-9]*)(?:\.([0-9]*))?([A-Za-z]*[+-]?[0-9]*)$")
_EXPONENT_RE = re.compile(r"^[eE]([+-]?[0-9]+)$")
#: Exponents beyond this are surely typos and would make huge integers.
_MAX_EXPONENT = 1000
_NANO = Fraction(1, 10**9)


class QuantityError(ValueError):
    """A string Kubernetes would not accept as a resource quantity."""


def _suffix_factor(suffix: str, text: str) -> Fraction:
    if suffix in _BINARY:
        return Fraction(1024 ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return Fraction(10) ** _DECIMAL[suffix]
    match = _EXPONENT_RE.match(suffix)
    if match is None:
        raise QuantityError(
            f"invalid quantity {text!r}: unknown suffix {suffix!r} (use one of n, u, m, k, M, G, "
            "T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3)"
        )
    exponent = int(match.group(1))
    if abs(exponent) > _MAX_EXPONENT:
        raise QuantityError(f"invalid quantity {text!r}: exponent out of range")
    return Fraction(10) ** exponent


def _round_to_nano(value: Fraction) -> Fraction:
    nanos = value / _NANO
    if nanos.denominator == 1:
        return value
    rounded = math.ceil(nanos) if nanos > 0 else math.floor(nanos)
    return rounded * _NANO


def parse_quantity(value: str | int) -> Fraction:
    """``"500m"`` -> ``Fraction(1, 2)``; ``"64Gi"`` -> ``Fraction(68719476736)``; ``4`` -> 4.

    Raises QuantityError (a ValueError) with the offending text for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise QuantityError(f"invalid quantity {value!r}: expected a string or an integer")
    if isinstance(value, int):
        return Fraction(value)
    return _parse_string(value)


@functools.lru_cache(maxsize=4096)
def _parse_string(value: str) -> Fraction:
    # Cached: clusters repeat the same few spellings ("8", "110", "64Gi") on every node and
    # profile, and both the strings and the Fractions are immutable.
    match = _QUANTITY_RE.match(value)
    if match is None:
        raise QuantityError(
            f"invalid quantity {value!r}: expected a number with an optional suffix, "
            "e.g. 4, 500m, 64Gi, 1e3"
        )
    sign, whole, fraction, suffix = match.groups()
    if not whole and not fraction:
        raise QuantityError(f"invalid quantity {value!r}: no digits")
    number = Fraction(int(whole or "0"))
    if fraction:
        number += Fraction(int(fraction), 10 ** len(fraction))
    result = number * _suffix_factor(suffix, value)
    if sign == "-":
        result = -result
    return _round_to_nano(result)


def format_quantity(value: Fraction) -> str:
    """A short, exact, Kubernetes-parsable spelling, for messages: ``64Gi``, ``500m``, ``96``."""
    if value.denominator == 1:
        whole = int(value)
        if whole != 0 and abs(whole) >= 1024:
            for suffix, power in sorted(_BINARY.items(), key=lambda item: -item[1]):
                if whole % (1024**power) == 0:
                    return f"{whole // 1024**power}{suffix}"
        return str(whole)
    millis = value * 1000
    if millis.denominator == 1:
        return f"{int(millis)}m"
    return f"{math.ceil(value / _NANO)}n"
