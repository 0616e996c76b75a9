"""The webhook's certificates as data: a CA and a serving pair made and checked at a given
time, and the next step of their rotation (open-policy-agent/cert-controller's rotator, whose
validity check also takes the time as an argument, so none of this needs a clock).

The Secret holds ``ca.crt`` (every CA the API server should trust, the current one first),
``ca.key`` (the current CA's key), ``tls.crt`` and ``tls.key`` (the serving pair, signed by the
current CA). cert-manager writes the same ``ca.crt``/``tls.crt``/``tls.key`` keys.

Rotation keeps every admission working, whatever the order in which the API server and the
replicas see the changes (``failurePolicy: Fail`` makes a gap visible as refused pods):

1. a CA that is missing, unreadable, or past two thirds of its life is replaced; the old one
   stays in ``ca.crt`` while it is valid, because the serving pair in use is signed by it;
2. the webhook configuration's ``caBundle`` is set to ``ca.crt`` before anything is signed by a
   CA it does not yet carry;
3. a serving pair that is missing, unreadable, not for every host, not signed by the current CA
   or past two thirds of its life is replaced (the replicas load it from the Secret);
4. CAs that have expired leave ``ca.crt`` (and then the bundle).

:func:`next_step` returns one step at a time; applying steps until it returns None ends in a
consistent state, from any starting state (an empty Secret included).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
CA_NAME = "aim-matcher-webhook-ca"
#: Certificates start this long before they are made: clocks of nodes and the API server
#: differ (cert-controller backdates by an hour too).
BACKDATE = timedelta(hours=1)
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


class CertError(ValueError):
    """A certificate or key that cannot be used; the message says why (one line)."""


@dataclass(frozen=True, slots=True)
class Pair:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class Policy:
    ca_validity: timedelta = timedelta(days=3650)
    serving_validity: timedelta = timedelta(days=365)
    #: Renew once less than this share of a certificate's lifetime is left.
    renew_when_left: float = 1 / 3


# --- making --------------------------------------------------------------------------------------


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _usage(*, sign_certs: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certs,
        crl_sign=sign_certs,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(now: datetime, policy: Policy = Policy()) -> Pair:
    """A self-signed CA (ECDSA P-256) valid from ``now`` (backdated) for its validity."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(CA_NAME)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + policy.ca_validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(sign_certs=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_serving(ca: Pair, hosts: Sequence[str], now: datetime, policy: Policy = Policy()) -> Pair:
    """A serving pair for ``hosts`` (DNS names or IP addresses), signed by ``ca``."""
    if not hosts:
        raise CertError("a serving certificate needs at least one host")
    ca_cert, ca_key = _load_cert(ca.cert_pem), _load_key(ca.key_pem)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertError("the CA key is not an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + policy.serving_validity, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign_certs=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


# --- checking ------------------------------------------------------------------------------------


def _load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise CertError(f"not a PEM certificate: {err}") from None


def _load_key(pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise CertError(f"not a PEM private key: {err}") from None


def split_pems(data: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, each as its own PEM block."""
    out = []
    for part in data.split(_PEM_BEGIN)[1:]:
        end = part.find(b"-----END CERTIFICATE-----")
        if end >= 0:
            out.append(_PEM_BEGIN + part[: end + len(b"-----END CERTIFICATE-----")] + b"\n")
    return out


def bundle(pems: Sequence[bytes]) -> bytes:
    return b"".join(p.strip() + b"\n" for p in pems)


def first_cert(pem: bytes) -> bytes:
    """The first certificate of a PEM bundle (the leaf of a chain, the current CA of ca.crt)."""
    pems = split_pems(pem)
    return pems[0] if pems else pem


def not_after(cert_pem: bytes) -> datetime:
    """When the (first) certificate of ``cert_pem`` expires; raises CertError."""
    return _load_cert(first_cert(cert_pem)).not_valid_after_utc


def _due(cert: x509.Certificate, now: datetime, policy: Policy) -> str | None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now >= end:
        return f"expired at {end:%Y-%m-%d %H:%M:%S}Z"
    if now < start:
        return f"not valid before {start:%Y-%m-%d %H:%M:%S}Z"
    if end - now < (end - start) * policy.renew_when_left:
        return f"expires at {end:%Y-%m-%d %H:%M:%S}Z (due: under a third of its lifetime left)"
    return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _covers(cert: x509.Certificate, hosts: Sequence[str]) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return list(hosts)
    have = {str(v) for v in names.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in names.get_values_for_type(x509.IPAddress)}
    return [h for h in hosts if str(_san(h).value) not in have]


def _key_matches(cert: x509.Certificate, key_pem: bytes) -> bool:
    key = _load_key(key_pem)
    return bool(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def ca_problem(ca: Pair | None, now: datetime, policy: Policy = Policy()) -> str | None:
    """Why the CA cannot (or should no longer) sign; None when it is good."""
    if ca is None or not ca.cert_pem or not ca.key_pem:
        return "no CA yet"
    try:
        cert = _load_cert(first_cert(ca.cert_pem))
        if not _key_matches(cert, ca.key_pem):
            return "the CA key does not belong to the CA certificate"
    except CertError as err:
        return f"the CA is unreadable: {err}"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "the CA certificate is not a CA (no basicConstraints)"
    if not constraints.ca:
        return "the CA certificate is not a CA"
    due = _due(cert, now, policy)
    return f"the CA {due}" if due else None


def serving_problem(
    serving: Pair | None,
    ca_cert_pem: bytes,
    hosts: Sequence[str],
    now: datetime,
    policy: Policy = Policy(),
) -> str | None:
    """Why the serving pair must be replaced; None when it is good."""
    if serving is None or not serving.cert_pem or not serving.key_pem:
        return "no serving certificate yet"
    try:
        cert = _load_cert(first_cert(serving.cert_pem))
        if not _key_matches(cert, serving.key_pem):
            return "the serving key does not belong to the serving certificate"
        issuer = _load_cert(ca_cert_pem)
    except CertError as err:
        return f"the serving certificate is unreadable: {err}"
    if not _issued_by(cert, issuer):
        return "the serving certificate is not signed by the current CA"
    missing = _covers(cert, hosts)
    if missing:
        return f"the serving certificate does not name {', '.join(missing)}"
    due = _due(cert, now, policy)
    return f"the serving certificate {due}" if due else None


# --- the rotation plan ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One write: the Secret's new ``data`` (whole), or the webhook configuration's bundle."""

    why: str
    secret: dict[str, bytes] | None = None
    ca_bundle: bytes | None = None


def _pair(data: Mapping[str, bytes], cert: str, key: str) -> Pair | None:
    if not data.get(cert) or not data.get(key):
        return None
    return Pair(data[cert], data[key])


def _valid_cas(pems: Sequence[bytes], now: datetime) -> list[bytes]:
    out = []
    for pem in pems:
        with contextlib.suppress(CertError):
            if _load_cert(pem).not_valid_after_utc > now:
                out.append(pem)
    return out


def next_step(
    secret: Mapping[str, bytes],
    bundles: Sequence[bytes],
    hosts: Sequence[str],
    now: datetime,
    policy: Policy = Policy(),
) -> Step | None:
    """The next write towards a valid CA, serving pair and caBundle; None when all is well.

    ``secret`` is the Secret's data (decoded), ``bundles`` the ``caBundle`` of each webhook of
    the configuration (decoded; one entry per webhook).
    """
    data = dict(secret)
    trusted = split_pems(data.get(CA_CERT) or b"")
    # ca.crt starts with the current CA, whose key ca.key holds.
    ca = Pair(trusted[0], data[CA_KEY]) if trusted and data.get(CA_KEY) else None
    why = ca_problem(ca, now, policy)
    if ca is None or why is not None:
        new_ca = make_ca(now, policy)
        data[CA_CERT] = bundle([new_ca.cert_pem, *_valid_cas(trusted, now)])
        data[CA_KEY] = new_ca.key_pem
        return Step(why=f"new CA: {why}", secret=data)
    want_bundle = bundle(trusted)
    if any(b != want_bundle for b in bundles):
        return Step(why="the caBundle differs from the Secret's ca.crt", ca_bundle=want_bundle)
    why = serving_problem(_pair(data, TLS_CERT, TLS_KEY), ca.cert_pem, hosts, now, policy)
    if why is not None:
        serving = make_serving(ca, hosts, now, policy)
        data[TLS_CERT], data[TLS_KEY] = serving.cert_pem, serving.key_pem
        return Step(why=f"new serving certificate: {why}", secret=data)
    valid = _valid_cas(trusted, now)
    if len(valid) != len(trusted):
        data[CA_CERT] = bundle(valid)
        return Step(why="expired CAs leave ca.crt", secret=data)
    return None


# --- serving -------------------------------------------------------------------------------------


def server_context(pair: Pair) -> ssl.SSLContext:
    """A TLS server context for the pair (TLS 1.2 and up), loaded without touching a file
    system the reader could see: ``ssl`` reads keys only from files, so a memfd stands in."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    pem = pair.cert_pem.rstrip(b"\n") + b"\n" + pair.key_pem
    try:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("aim-webhook-cert", os.MFD_CLOEXEC)
            try:
                os.write(fd, pem)
                context.load_cert_chain(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            return context
        with tempfile.TemporaryDirectory() as tmp:  # pragma: no cover - not Linux
            path = Path(tmp) / "serving.pem"
            path.touch(mode=0o600)
            path.write_bytes(pem)
            context.load_cert_chain(str(path))
    except (ssl.SSLError, OSError) as err:
        raise CertError(f"the serving certificate or key is unusable: {err}") from None
    return context  # pragma: no cover - not Linux
