"""A small Kubernetes API client: JSON over HTTP(S) with urllib3, for the few calls we make.

Why not the ``kubernetes`` package: importing it costs about 30 MiB and 0.8 s, and its
generated ``CoreV1Api`` module 80 MiB more, for an agent that sends two requests a minute and
a controller that lists, watches and patches a handful of resources. This client speaks the
same API through urllib3 (already installed with ``kubernetes``): raw JSON in and out, which is
what our callers wanted anyway.

``connect()`` resolves the configuration in one order for every program (see
:mod:`aimkit.kubeconfig`: ``--kubeconfig``, ``$KUBECONFIG``, in-cluster, ``~/.kube/config``).

What callers get:

- :meth:`KubeClient.request`: one call, the decoded JSON object. Non-2xx answers raise
  :class:`ApiError` with the status code, the Status ``reason`` and ``message``, and
  ``Retry-After`` (seconds) for 429/503; unreachable servers, TLS failures, timeouts and dropped
  connections raise :class:`TransportError`, whose message is one line. Nothing is retried here
  except once after a 401 when the credentials can be refreshed (a rotated token file, an exec
  plugin's expired token): back-off is the caller's business.
- :meth:`KubeClient.watch`: a :class:`WatchStream` of (type, object) events, which another
  thread may :meth:`~WatchStream.interrupt`.

Thread-safe: one client serves every thread of a program (urllib3 pools connections).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import (
    HTTPError,
    InsecureRequestWarning,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from aimkit.build import version
from aimkit.kubeauth import AuthError, ClientCert
from aimkit.kubeconfig import ClusterConfig, ConfigError, load

__all__ = [
    "JSON",
    "MERGE_PATCH",
    "ApiError",
    "AuthError",
    "ClusterConfig",
    "ConfigError",
    "KubeClient",
    "KubeError",
    "TransportError",
    "WatchStream",
    "connect",
]

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"

#: (connect, read) seconds of a request that does not say otherwise.
DEFAULT_TIMEOUT = (5.0, 30.0)


class KubeError(Exception):
    """Any failure of an API call."""


class TransportError(KubeError):
    """No usable HTTP answer: unreachable, TLS, timeout, dropped connection. One line.

    ``why`` is the message without the ``METHOD path:`` prefix, for callers that name the
    call their own way.
    """

    def __init__(self, what: str, why: str) -> None:
        self.what = what
        self.why = why
        super().__init__(f"{what}: {why}" if what else why)


class ApiError(KubeError):
    """The API server answered with an error status."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        what: str = "",
        retry_after: float | None = None,
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.what = what
        self.retry_after = retry_after
        self.body = body
        text = f"HTTP {status} {reason}".strip()
        if message:
            text = f"{text}: {message}"
        super().__init__(f"{what}: {text}" if what else text)


def connect(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    *,
    user_agent: str | None = None,
    pool_size: int = 4,
) -> KubeClient:
    """A client for the cluster the resolution order finds (raises ConfigError)."""
    return KubeClient(load(kubeconfig, context), user_agent=user_agent, pool_size=pool_size)


class KubeClient:
    def __init__(
        self,
        config: ClusterConfig,
        *,
        user_agent: str | None = None,
        pool_size: int = 4,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.config = config
        self.user_agent = user_agent or f"aim-accelerator/{version()}"
        self.timeout = timeout
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._pools: urllib3.PoolManager | None = None
        self._pools_cert: ClientCert | None = None
        self._tls_base = _tls_context(config) if config.server.startswith("https://") else None
        if config.proxy_url and not config.proxy_url.startswith(("http://", "https://")):
            raise ConfigError(f"proxy-url {config.proxy_url}: only http(s) proxies are supported")
        if config.insecure:
            # Said once here rather than by urllib3 on every request.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            log.warning(
                "TLS verification is off (insecure-skip-tls-verify)",
                extra={"server": config.server},
            )

    @property
    def server(self) -> str:
        return self.config.server

    def log_fields(self) -> dict[str, str]:
        """Where and as whom, for the start-up log line (no secrets)."""
        c = self.config
        return {"server": c.server, "source": c.source, "auth": c.auth.describe()}

    def close(self) -> None:
        with self._lock:
            if self._pools is not None:
                self._pools.clear()
                self._pools = None

    # -- calls ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: float | tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """One call; the JSON object the server answered (raises KubeError)."""
        raw = self.request_bytes(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        what = f"{method} {path}"
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError as err:
            raise TransportError(what, f"the answer is not JSON: {err}") from None
        if not isinstance(decoded, dict):
            raise TransportError(what, "the answer is not a JSON object")
        return decoded

    def request_bytes(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: float | tuple[float, float] | None = None,
    ) -> bytes:
        """One call; the raw body of the 2xx answer, for callers that decode it their own way
        (the matcher decodes node lists into the few fields it keeps). Raises KubeError."""
        response = self._send(method, path, query, body, content_type, timeout, stream=False)
        return bytes(response.data or b"")

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        return self.request("GET", path, query=query or None)

    def watch(
        self,
        path: str,
        query: Mapping[str, Any] | None = None,
        timeout: float | tuple[float, float] | None = None,
    ) -> WatchStream:
        """Start a watch (``watch=true`` is added); raises like :meth:`request`."""
        full = {**(query or {}), "watch": "true"}
        response = self._send("GET", path, full, None, JSON, timeout, stream=True)
        return WatchStream(response)

    # -- HTTP -----------------------------------------------------------------------------

    def _send(  # noqa: PLR0917 - private, called from two places
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: float | tuple[float, float] | None,
        stream: bool,
    ) -> urllib3.BaseHTTPResponse:
        what = f"{method} {path}"
        url = self.config.server + path
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        connect_timeout, read_timeout = _timeouts(timeout, self.timeout)
        for attempt in (1, 2):
            headers = {"Accept": JSON, "User-Agent": self.user_agent}
            try:
                headers.update(self.config.auth.headers())
                pools = self._pool_manager()
            except (AuthError, ConfigError) as err:
                raise TransportError(what, f"credentials: {err}") from None
            if data is not None:
                headers["Content-Type"] = content_type
            try:
                response = pools.request(
                    method,
                    url,
                    body=data,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
                    retries=False,
                    redirect=False,
                    preload_content=not stream,
                )
            except (HTTPError, OSError) as err:
                raise TransportError(what, describe(err, self.config.server)) from err
            if 200 <= response.status < 300:
                return response
            raw = response.data if not stream else response.read()
            response.release_conn()
            if response.status == 401 and attempt == 1 and self.config.auth.refresh():
                continue
            raise _api_error(what, response.status, response.headers, raw)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pool_manager(self) -> urllib3.PoolManager:
        cert = self.config.auth.cert()
        with self._lock:
            if self._pools is not None and cert is self._pools_cert:
                return self._pools
            # A new client certificate (exec plugin) needs new TLS connections; the old pool is
            # left to requests still using it and closes when they are done.
            self._pools = self._new_pools(cert)
            self._pools_cert = cert
            return self._pools

    def _new_pools(self, cert: ClientCert | None) -> urllib3.PoolManager:
        c = self.config
        kwargs: dict[str, Any] = {"maxsize": self._pool_size, "block": False}
        if self._tls_base is not None:
            context = self._tls_base
            if cert is not None:
                context = _tls_context(c)
                _load_client_cert(context, cert)
            kwargs["ssl_context"] = context
            kwargs["cert_reqs"] = "CERT_NONE" if c.insecure else "CERT_REQUIRED"
            if c.insecure:
                kwargs["assert_hostname"] = False
            elif c.tls_server_name:
                kwargs["server_hostname"] = c.tls_server_name
        if c.proxy_url:
            return urllib3.ProxyManager(c.proxy_url, num_pools=2, **kwargs)
        return urllib3.PoolManager(num_pools=2, **kwargs)


class WatchStream:
    """The events of one watch, read as they arrive; :meth:`interrupt` ends it from elsewhere."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self._interrupted = False

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) per event; ends when the server ends the watch.

        Raises TransportError for a broken stream and ValueError for a garbled event.
        """
        for line in self.lines():
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("a watch event is not a JSON object")
            obj = event.get("object")
            yield str(event.get("type", "")), obj if isinstance(obj, dict) else {}

    def lines(self) -> Iterator[bytes]:
        """The raw events, one JSON document per item (blank lines skipped), for callers that
        decode them their own way. Raises TransportError for a broken stream."""
        buffer = b""
        try:
            for chunk in self._response.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield line
            if buffer.strip():
                yield buffer
        except (HTTPError, OSError) as err:
            raise TransportError("watch", f"stream broke: {describe(err, '')}") from err
        except AttributeError as err:
            # urllib3 reading a response that was closed under it (http.client drops its file
            # on close): the stream is over, not a bug of the caller's.
            if not (self._interrupted or self._response.closed):
                raise
            raise TransportError("watch", "stream closed while it was read") from err

    def interrupt(self) -> None:
        """Unblock a thread reading the stream (it then ends or raises TransportError). The
        connection stays with the stream until close(): handed back to the pool now, another
        request could take it while the reader is still on it."""
        self._interrupted = True
        try:
            shutdown = getattr(self._response, "shutdown", None)
            if shutdown is not None:
                shutdown()
        except Exception:  # already closed: nothing to interrupt
            pass

    def close(self) -> None:
        """Drop the connection: a watch cut short cannot serve another request (one that ran to
        its end has already been given back to the pool by urllib3)."""
        with contextlib.suppress(Exception):
            self._response.close()


# --- helpers ---------------------------------------------------------------------------------


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _timeouts(
    given: float | tuple[float, float] | None, default: tuple[float, float]
) -> tuple[float, float]:
    if given is None:
        return default
    if isinstance(given, tuple):
        return given
    return (min(default[0], given), given)


def _api_error(what: str, status: int, headers: Any, raw: bytes) -> ApiError:
    reason, message = "", ""
    try:
        doc = json.loads(raw or b"")
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        reason = str(doc.get("reason") or "")
        message = str(doc.get("message") or "")
    elif raw:
        message = " ".join(raw[:200].decode(errors="replace").split())
    return ApiError(
        status,
        reason or _default_reason(status),
        message,
        what=what,
        retry_after=retry_after(headers.get("Retry-After") if headers is not None else None),
        body=raw or b"",
    )


def _default_reason(status: int) -> str:
    from http import HTTPStatus  # noqa: PLC0415

    try:
        return HTTPStatus(status).phrase.replace(" ", "")
    except ValueError:
        return ""


def retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header; None for none or an HTTP date."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def describe(err: BaseException, server: str) -> str:
    """One line for a transport failure: ``cannot reach https://x:6443: connection refused``."""
    reach = f"cannot reach {server}: " if server else ""
    # NewConnectionError is a ConnectTimeoutError in urllib3 2: test it first.
    if isinstance(err, NewConnectionError | ConnectionError):
        return f"{reach}{_root_text(err)}"
    if isinstance(err, ReadTimeoutError):
        return f"{reach}no answer in time (read timed out)"
    if isinstance(err, Urllib3Timeout | TimeoutError):
        return f"{reach}timed out connecting"
    if isinstance(err, SSLError | ssl.SSLError):
        return f"{reach}TLS: {_root_text(err)}"
    if isinstance(err, ProxyError):
        return f"{reach}proxy: {_root_text(err)}"
    if isinstance(err, ProtocolError):
        return f"{reach}connection dropped ({_root_text(err)})"
    return f"{reach}{type(err).__name__}: {_root_text(err)}"


def _root_text(err: BaseException) -> str:
    """The innermost cause's words, without urllib3's object reprs."""
    seen: set[int] = set()
    current: BaseException = err
    while id(current) not in seen:
        seen.add(id(current))
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    if isinstance(current, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {current.verify_message or current}"
    if isinstance(current, ssl.SSLError):
        return current.reason or str(current)
    if isinstance(current, OSError) and current.strerror:
        return current.strerror.lower() if current.strerror[:1].isupper() else current.strerror
    text = str(current)
    if ": " in text and text.startswith("<"):
        text = text.split(": ", 1)[1]
    return " ".join(text.split())


def _tls_context(config: ClusterConfig) -> ssl.SSLContext:
    if config.insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if config.ca_pem is not None:
        try:
            return ssl.create_default_context(cadata=config.ca_pem.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as err:
            raise ConfigError(f"{config.source}: the CA is not PEM certificates: {err}") from None
    return ssl.create_default_context()


def _load_client_cert(context: ssl.SSLContext, cert: ClientCert) -> None:
    """Load an in-memory certificate and key; ``ssl`` only reads them from a file.

    A memfd keeps the key off every file system (the agents' root file systems are read-only);
    elsewhere a private temporary file is written and removed at once.
    """
    pem = cert.cert_pem.rstrip(b"\n") + b"\n" + cert.key_pem
    try:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("aim-client-cert", os.MFD_CLOEXEC)
            try:
                os.write(fd, pem)
                context.load_cert_chain(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "client.pem"
            path.touch(mode=0o600)
            path.write_bytes(pem)
            context.load_cert_chain(str(path))
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(f"client certificate or key unusable: {err}") from None
