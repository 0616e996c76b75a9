"""TLS and authentication in front of the test API server, for the client's auth tests.

``TinyCA`` issues serving and client certificates (ECDSA P-256, one day). ``SecureApiServer``
serves the test API server's own handler over HTTPS and, like kube-apiserver, authenticates
each request by bearer token or client certificate (401 otherwise), recording who each request
came from. The API semantics are the test server's, untouched.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.apiserver import ApiServer
from tests.apiserver.handler import Handler
from tests.apiserver.server import _HTTPServer


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Pair:
    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        return cert, key


@dataclass(frozen=True)
class TinyCA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "aim-test-ca") -> TinyCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, server: bool = False, hosts: tuple[str, ...] = ()) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Pair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


@dataclass
class SecureApiServer:
    """The test API server behind HTTPS and authentication (see the module docstring)."""

    workdir: Path
    tokens: set[str] = field(default_factory=set)
    ca: TinyCA = field(default_factory=TinyCA.create)
    #: Who each authenticated request came from ("token:<t>" or "cert:<CN>"), in order.
    seen: list[str] = field(default_factory=list)
    api: ApiServer = field(default_factory=ApiServer)
    serving_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")

    def start(self) -> SecureApiServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        serving = self.ca.issue("kube-apiserver", server=True, hosts=self.serving_hosts)
        cert_file, key_file = serving.write(self.workdir, "serving")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.load_verify_locations(cadata=self.ca.pem.decode())
        context.verify_mode = ssl.CERT_OPTIONAL  # client certificates, as kube-apiserver asks
        outer = self

        class AuthHandler(Handler):
            app = self.api

            def parse_request(self) -> bool:
                if not super().parse_request():
                    return False
                who = outer._identify(self)
                if who is None:
                    self.send_response(401)
                    body = b'{"kind":"Status","apiVersion":"v1","status":"Failure",'
                    body += b'"reason":"Unauthorized","message":"Unauthorized","code":401}'
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return False
                with outer._lock:
                    outer.seen.append(who)
                return True

        self._lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", 0), AuthHandler)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.api.stop()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def _identify(self, handler: Any) -> str | None:
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self.tokens:
            return f"token:{auth[7:]}"
        peer = handler.connection.getpeercert()
        if peer:
            for rdn in peer.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        return f"cert:{value}"
        return None
