"""The webhook's certificates at given times (no clock): what is made, what each check refuses,
and rotation as data. The invariant that matters under failurePolicy Fail: at every step from
any starting state, the serving pair in the Secret is signed by a CA the caBundle carries, so no
replica ever serves a certificate the API server does not trust."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from matcher.webhook import certs
from matcher.webhook.certs import (
    CA_CERT,
    CA_KEY,
    TLS_CERT,
    TLS_KEY,
    CertError,
    Pair,
    Policy,
    ca_problem,
    make_ca,
    make_serving,
    next_step,
    serving_problem,
    split_pems,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOSTS = ["aim-matcher-webhook.aim-system.svc", "aim-matcher-webhook.aim-system.svc.cluster.local"]
CA = make_ca(NOW)
SERVING = make_serving(CA, HOSTS, NOW)


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_a_ca_and_a_serving_pair_as_the_api_server_needs_them():
    ca, leaf = load(CA.cert_pem), load(SERVING.cert_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(days=3650, hours=1)
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == HOSTS
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Backdated an hour for clock skew; a serving pair never outlives its CA.
    assert leaf.not_valid_before_utc == NOW - timedelta(hours=1)
    short_ca = make_ca(NOW, Policy(ca_validity=timedelta(days=30)))
    assert load(make_serving(short_ca, HOSTS, NOW).cert_pem).not_valid_after_utc == (
        load(short_ca.cert_pem).not_valid_after_utc
    )


def test_ip_addresses_become_ip_names():
    leaf = load(make_serving(CA, ["127.0.0.1", "::1", "localhost"], NOW).cert_pem)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    loopback = make_serving(CA, ["127.0.0.1"], NOW)
    assert serving_problem(loopback, CA.cert_pem, ["127.0.0.1"], NOW) is None


OTHER_CA = make_ca(NOW)
SERVING_PROBLEMS = [
    ("good", SERVING, HOSTS, NOW, None),
    ("missing", None, HOSTS, NOW, "no serving certificate yet"),
    ("another host", SERVING, ["other.aim-system.svc"], NOW, "does not name other.aim-system.svc"),
    ("signed by another CA", make_serving(OTHER_CA, HOSTS, NOW), HOSTS, NOW,
     "not signed by the current CA"),
    ("a key of another pair", Pair(SERVING.cert_pem, make_serving(CA, HOSTS, NOW).key_pem), HOSTS,
     NOW, "the serving key does not belong to the serving certificate"),
    ("garbage", Pair(b"not a pem", SERVING.key_pem), HOSTS, NOW, "unreadable"),
    ("two thirds of its life gone", SERVING, HOSTS, NOW + timedelta(days=250),
     "(due: under a third of its lifetime left)"),
    ("expired", SERVING, HOSTS, NOW + timedelta(days=366), "expired at"),
    ("not yet valid", SERVING, HOSTS, NOW - timedelta(hours=2), "not valid before"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pair", "hosts", "at", "problem"),
    [p[1:] for p in SERVING_PROBLEMS],
    ids=[p[0] for p in SERVING_PROBLEMS],
)
def test_serving_pair_checks(pair, hosts, at, problem):
    found = serving_problem(pair, CA.cert_pem, hosts, at)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_ca_checks():
    assert ca_problem(CA, NOW) is None
    assert ca_problem(None, NOW) == "no CA yet"
    assert ca_problem(Pair(CA.cert_pem, OTHER_CA.key_pem), NOW) == (
        "the CA key does not belong to the CA certificate"
    )
    assert ca_problem(Pair(SERVING.cert_pem, SERVING.key_pem), NOW) == (
        "the CA certificate is not a CA"
    )
    due = ca_problem(CA, NOW + timedelta(days=2500))
    assert due is not None
    assert due.startswith("the CA expires at 2036-11-")


def test_serving_context_loads_from_memory_and_refuses_a_bad_pair():
    context = certs.server_context(SERVING)
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(CertError, match="unusable"):
        certs.server_context(Pair(SERVING.cert_pem, OTHER_CA.key_pem))


# --- rotation as data ----------------------------------------------------------------------------


def apply_steps(
    secret: dict[str, bytes], bundles: list[bytes], at: datetime, hosts: list[str] = HOSTS
) -> tuple[dict[str, bytes], list[bytes], list[str]]:
    """Steps until done, checking after each that the Secret's pair is trusted by the bundle
    the API server would use (once it has one)."""
    whys: list[str] = []
    for _ in range(8):
        step = next_step(secret, bundles, hosts, at)
        if step is None:
            return secret, bundles, whys
        whys.append(step.why)
        if step.secret is not None:
            secret = step.secret
        else:
            assert step.ca_bundle is not None
            bundles = [step.ca_bundle] * len(bundles)
        assert_trusted(secret, bundles)
    raise AssertionError(f"no end after 8 steps: {whys}")


def assert_trusted(secret: dict[str, bytes], bundles: list[bytes]) -> None:
    if not secret.get(TLS_CERT) or not any(bundles):
        return
    try:
        leaf = load(secret[TLS_CERT])
    except ValueError:
        return  # nothing a replica could serve (a garbage start)
    for bundle in bundles:
        issuers = [load(p) for p in split_pems(bundle)]
        assert any(leaf.issuer == ca.subject and _signed(leaf, ca) for ca in issuers), (
            "the serving pair in the Secret is not trusted by the caBundle"
        )


def _signed(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except Exception:
        return False
    return True


def test_from_the_shipped_empty_secret():
    secret, bundles, whys = apply_steps({}, [b"", b""], NOW)
    assert whys == [
        "new CA: no CA yet",
        "the caBundle differs from the Secret's ca.crt",
        "new serving certificate: no serving certificate yet",
    ]
    assert bundles == [secret[CA_CERT]] * 2
    pair = Pair(secret[TLS_CERT], secret[TLS_KEY])
    assert serving_problem(pair, secret[CA_CERT], HOSTS, NOW) is None
    # Done is done: the same state at the same time needs nothing.
    assert next_step(secret, bundles, HOSTS, NOW) is None


def test_a_serving_pair_is_renewed_with_the_same_ca_and_bundle():
    secret, bundles, _ = apply_steps({}, [b""], NOW)
    later = NOW + timedelta(days=250)
    renewed, renewed_bundles, whys = apply_steps(dict(secret), bundles, later)
    assert len(whys) == 1
    assert whys[0].startswith("new serving certificate: the serving certificate expires at")
    assert renewed[CA_CERT] == secret[CA_CERT]
    assert renewed_bundles == bundles
    assert renewed[TLS_CERT] != secret[TLS_CERT]


def test_a_ca_is_renewed_with_the_old_one_trusted_until_it_expires():
    secret, bundles, _ = apply_steps({}, [b"", b""], NOW)
    old_ca = secret[CA_CERT]
    later = NOW + timedelta(days=2500)
    rotated, new_bundles, whys = apply_steps(dict(secret), bundles, later)
    assert [w.split(":")[0] for w in whys] == [
        "new CA",
        "the caBundle differs from the Secret's ca.crt",
        "new serving certificate",
    ]
    cas = split_pems(rotated[CA_CERT])
    assert len(cas) == 2
    assert cas[1].strip() == old_ca.strip()
    assert new_bundles == [rotated[CA_CERT]] * 2
    # Once the old CA has expired it leaves ca.crt, then the bundle.
    gone = NOW + timedelta(days=3651)
    pruned, pruned_bundles, whys = apply_steps(dict(rotated), new_bundles, gone)
    assert "expired CAs leave ca.crt" in whys
    assert split_pems(pruned[CA_CERT]) == cas[:1]
    assert pruned_bundles == [pruned[CA_CERT]] * 2


START_STATES = {
    "garbage everywhere": ({CA_CERT: b"x", CA_KEY: b"y", TLS_CERT: b"z", TLS_KEY: b"w"}, [b"q"]),
    "a CA without its key": ({CA_CERT: CA.cert_pem}, [CA.cert_pem]),
    "cert-manager's keys only": ({CA_CERT: CA.cert_pem, TLS_CERT: SERVING.cert_pem,
                                  TLS_KEY: SERVING.key_pem}, [CA.cert_pem]),
    "a pair for other hosts": ({CA_CERT: CA.cert_pem, CA_KEY: CA.key_pem,
                                TLS_CERT: make_serving(CA, ["x"], NOW).cert_pem,
                                TLS_KEY: make_serving(CA, ["x"], NOW).key_pem}, [CA.cert_pem]),
    "a bundle someone else set": ({CA_CERT: CA.cert_pem, CA_KEY: CA.key_pem,
                                   TLS_CERT: SERVING.cert_pem, TLS_KEY: SERVING.key_pem},
                                  [OTHER_CA.cert_pem, CA.cert_pem]),
    "no configuration": ({}, []),
}  # fmt: skip


@pytest.mark.parametrize("start", list(START_STATES))
def test_every_start_ends_consistent(start):
    secret, bundles = START_STATES[start]
    final, final_bundles, _ = apply_steps(dict(secret), list(bundles), NOW)
    assert ca_problem(Pair(split_pems(final[CA_CERT])[0], final[CA_KEY]), NOW) is None
    pair = Pair(final[TLS_CERT], final[TLS_KEY])
    assert serving_problem(pair, split_pems(final[CA_CERT])[0], HOSTS, NOW) is None
    assert all(b == final[CA_CERT] for b in final_bundles)
