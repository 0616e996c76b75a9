"""Quantities parse exactly as Kubernetes parses them (apimachinery resource.ParseQuantity)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from matcher.core.quantity import QuantityError, format_quantity, parse_quantity

KI = 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Fraction(0)),
        ("4", Fraction(4)),
        ("+4", Fraction(4)),
        ("-4", Fraction(-4)),
        ("500m", Fraction(1, 2)),
        ("1500m", Fraction(3, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("2k", Fraction(2000)),
        ("2M", Fraction(2 * 10**6)),
        ("1G", Fraction(10**9)),
        ("1T", Fraction(10**12)),
        ("1P", Fraction(10**15)),
        ("1E", Fraction(10**18)),
        ("64Ki", Fraction(64 * KI)),
        ("64Mi", Fraction(64 * KI**2)),
        ("64Gi", Fraction(64 * KI**3)),
        ("1.5Gi", Fraction(3 * KI**3, 2)),
        ("2Ti", Fraction(2 * KI**4)),
        ("1Pi", Fraction(KI**5)),
        ("1Ei", Fraction(KI**6)),
        ("1e3", Fraction(1000)),
        ("1E3", Fraction(1000)),
        ("1e+3", Fraction(1000)),
        ("15e-1", Fraction(3, 2)),
        ("100u", Fraction(1, 10**4)),
        ("5n", Fraction(5, 10**9)),
        ("2063613Mi", Fraction(2063613 * KI**2)),
        (7, Fraction(7)),
    ],
)
def test_parses_like_kubernetes(text, expected):
    assert parse_quantity(text) == expected


def test_precision_below_nano_rounds_up_away_from_zero():
    assert parse_quantity("0.1n") == Fraction(1, 10**9)
    assert parse_quantity("-0.1n") == Fraction(-1, 10**9)
    assert parse_quantity("1.0000000001") == Fraction(1) + Fraction(1, 10**9)


def test_comparisons_are_exact_where_floats_are_not():
    # 0.1 + 0.2 != 0.3 in floats; quantities must not care.
    assert parse_quantity("100m") + parse_quantity("200m") == parse_quantity("300m")
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1000Mi") < parse_quantity("1Gi")


@pytest.mark.parametrize(
    "text",
    ["", "abc", "1 Gi", "1KI", "1K", "1Gb", "1.5.5", "--1", "1e", "1e3.5", "Gi", ".", "1i", "0x10"],
)
def test_rejects_garbage_with_the_text_in_the_message(text):
    with pytest.raises(QuantityError) as err:
        parse_quantity(text)
    assert repr(text) in str(err.value)


@pytest.mark.parametrize("value", [True, 1.5, None, [1]])
def test_rejects_non_quantity_types(value):
    with pytest.raises(QuantityError):
        parse_quantity(value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("64Gi", "64Gi"),
        ("500m", "500m"),
        ("96", "96"),
        ("1000", "1000"),
        ("2063613Mi", "2063613Mi"),
    ],
)
def test_format_round_trips(text, shown):
    assert format_quantity(parse_quantity(text)) == shown
    assert parse_quantity(format_quantity(parse_quantity(text))) == parse_quantity(text)
