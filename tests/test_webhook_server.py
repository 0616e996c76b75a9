"""The webhook's HTTPS edge, over real TLS with a client that trusts only the test CA (as the
API server trusts only the caBundle): reviews answered in their own apiVersion with their uid,
the strict edge (method, Content-Type, size cap, malformed reviews), the cache-sync rule,
certificate rotation without a restart, no plain HTTP before a certificate, and concurrency."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509

from matcher.core.admission import (
    PROFILE_KEY,
    CachedEntry,
    Lookup,
    lookup_over,
)
from matcher.core.config import MatcherConfig
from matcher.webhook import certs
from matcher.webhook.review import (
    MAX_REVIEW_BYTES,
    ReviewError,
    decode,
    denied,
    encode,
    patched,
)
from matcher.webhook.server import (
    BEFORE_SYNC_IGNORE,
    OUTCOME_ERROR,
    OUTCOME_NOT_SYNCED,
    PodAdmission,
    TlsStore,
    WebhookServer,
)
from tests.test_webhook_admission import PROFILES, pod
from tests.webhook_support import patch_of, post_review, review, served_certificate, tls_client

NOW = datetime.now(UTC)
CA = certs.make_ca(NOW)
PAIR = certs.make_serving(CA, ["127.0.0.1"], NOW)
LOOKUP = lookup_over({(p.kind, p.namespace or "", p.name): CachedEntry(p) for p in PROFILES})
OPTED_IN = pod({PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"})


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()

    def __call__(self, outcome: str, profile: str, seconds: float) -> None:
        with self.lock:
            self.seen.append((outcome, profile, seconds))


def serve(
    lookup: Lookup = LOOKUP,
    *,
    synced: bool = True,
    before_sync: str = "deny",
    pair: certs.Pair | None = PAIR,
) -> tuple[WebhookServer, Recorder]:
    recorder = Recorder()
    tls = TlsStore()
    if pair is not None:
        tls.load(pair)
    admission = PodAdmission(
        lookup,
        MatcherConfig,
        lambda: synced,
        before_sync=before_sync,
        sync_wait=0.1,
        skip_namespaces=frozenset({"kube-system", "aim-system"}),
        observe=recorder,
    )
    server = WebhookServer("127.0.0.1", 0, admission, tls, observe=recorder)
    return server.start(), recorder


@pytest.fixture
def webhook() -> Iterator[tuple[WebhookServer, Recorder]]:
    server, recorder = serve()
    try:
        yield server, recorder
    finally:
        server.stop()


def test_a_review_is_answered_with_its_uid_and_a_patch(webhook):
    server, recorder = webhook
    status, answer = post_review(server.port, review(OPTED_IN, uid="7f1d-uid"), CA.cert_pem)
    assert status == 200
    assert isinstance(answer, dict)
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "7f1d-uid"
    assert response["allowed"] is True
    assert {op["path"] for op in patch_of(answer)} >= {"/spec/affinity", "/metadata/annotations"}
    [(outcome, profile, seconds)] = recorder.seen
    assert (outcome, profile) == ("mutated", "aimclusterprofile/qwen-qwen3-32b-mi300x-lat-fp8")
    assert 0 < seconds < 1


def test_a_v1beta1_review_gets_a_v1beta1_answer(webhook):
    server, _ = webhook
    body = review(OPTED_IN, api_version="admission.k8s.io/v1beta1")
    _, answer = post_review(server.port, body, CA.cert_pem)
    assert isinstance(answer, dict)
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"


def test_a_refusal_carries_code_reason_and_message(webhook):
    server, recorder = webhook
    refused = pod({PROFILE_KEY: "qwen-qwen3-32b-mi355x-lat-fp4"})
    _, answer = post_review(server.port, review(refused), CA.cert_pem)
    assert isinstance(answer, dict)
    response = answer["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["reason"] == "Forbidden"
    assert response["status"]["message"].startswith(
        "AIMClusterProfile qwen-qwen3-32b-mi355x-lat-fp4 is NotAvailable: "
    )
    assert "patch" not in response
    assert recorder.seen[0][0] == "denied"


@pytest.mark.parametrize(
    ("changes", "namespace"),
    [
        ({"operation": "UPDATE"}, "ml-team"),
        ({"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}}, "ml-team"),
        ({}, "kube-system"),
        ({}, "aim-system"),
    ],
)
def test_what_the_configuration_should_never_send_passes_untouched(webhook, changes, namespace):
    server, recorder = webhook
    body = review(OPTED_IN, namespace)
    body["request"].update(changes)
    _, answer = post_review(server.port, body, CA.cert_pem)
    assert isinstance(answer, dict)
    assert answer["response"] == {"uid": body["request"]["uid"], "allowed": True}
    assert recorder.seen[0][0] == "skipped"


# --- the strict edge -----------------------------------------------------------------------------


def test_wrong_method_and_content_type(webhook):
    server, _ = webhook
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls_client(CA.cert_pem))
    conn.request("GET", "/mutate-pods")
    got = conn.getresponse()
    assert got.status == 405
    assert got.getheader("Allow") == "POST"
    got.read()
    conn.close()
    status, answer = post_review(
        server.port, review(OPTED_IN), CA.cert_pem, content_type="application/yaml"
    )
    assert status == 415
    assert answer == "Content-Type application/yaml: expected application/json\n"


MALFORMED = [
    (b"{not json", "the request body is not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"kind": "Pod", "apiVersion": "v1"}).encode(), "kind: expected AdmissionReview"),
    (json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v2"}).encode(),
     "apiVersion: expected admission.k8s.io/v1 or admission.k8s.io/v1beta1"),
    (json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
                 "request": {"object": {}}}).encode(), "request.uid: missing"),
    (json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
                 "request": {"uid": "u", "object": []}}).encode(), "request.object"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), MALFORMED)
def test_a_malformed_review_is_a_400_review_saying_why(webhook, body, message):
    server, recorder = webhook
    status, answer = post_review(server.port, body, CA.cert_pem)
    assert status == 400
    assert isinstance(answer, dict)
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 400
    assert message in answer["response"]["status"]["message"]
    assert recorder.seen == [(OUTCOME_ERROR, "", 0.0)]
    with pytest.raises(ReviewError, match=message.split(":")[0]):
        decode(body)


def test_the_uid_of_a_refused_review_is_still_echoed(webhook):
    server, _ = webhook
    body = {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1",
            "request": {"uid": "u-9", "object": "a string"}}  # fmt: skip
    _, answer = post_review(server.port, body, CA.cert_pem)
    assert isinstance(answer, dict)
    assert answer["response"]["uid"] == "u-9"
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"


def test_reviews_up_to_seven_mebibytes_are_read_and_larger_ones_refused(webhook):
    server, _ = webhook
    big = json.loads(json.dumps(OPTED_IN))
    big["metadata"]["annotations"] = {"example.com/blob": "x" * (6 * 1024 * 1024)}
    status, answer = post_review(server.port, review(big), CA.cert_pem)
    assert status == 200
    assert isinstance(answer, dict)
    assert answer["response"]["allowed"] is True
    # Over the cap: refused from the Content-Length alone, before the body is read.
    context = tls_client(CA.cert_pem)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(
            b"POST /mutate-pods HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MAX_REVIEW_BYTES + 1}\r\n\r\n".encode()
        )
        head = tls.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413")


def test_a_failing_lookup_is_a_500_answer_not_a_dropped_connection():
    def broken(_kind: str, _ns: str, _name: str) -> Any:
        raise RuntimeError("cache exploded")

    server, recorder = serve(Lookup(named=broken, by_aim_id=lambda _aim_id: []))
    try:
        status, answer = post_review(server.port, review(OPTED_IN), CA.cert_pem)
    finally:
        server.stop()
    assert status == 200
    assert isinstance(answer, dict)
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 500
    assert recorder.seen[-1][0] == OUTCOME_ERROR


# --- caches, certificates, load ------------------------------------------------------------------


def test_before_the_caches_sync_a_pod_is_refused_asking_to_retry():
    server, recorder = serve(synced=False)
    try:
        _, answer = post_review(server.port, review(OPTED_IN), CA.cert_pem)
    finally:
        server.stop()
    assert isinstance(answer, dict)
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 503
    assert "caches are not synced yet" in answer["response"]["status"]["message"]
    assert recorder.seen[0][0] == OUTCOME_NOT_SYNCED


def test_before_sync_ignore_admits_unchanged_with_a_warning():
    server, _ = serve(synced=False, before_sync=BEFORE_SYNC_IGNORE)
    try:
        _, answer = post_review(server.port, review(OPTED_IN), CA.cert_pem)
    finally:
        server.stop()
    assert isinstance(answer, dict)
    assert answer["response"]["allowed"] is True
    assert "patch" not in answer["response"]
    assert answer["response"]["warnings"] == [
        "not mutated: aim-matcher is starting: its profile caches are not synced yet"
    ]


def test_no_certificate_no_service_and_never_plain_http():
    server, _ = serve(pair=None)
    try:
        with pytest.raises(ssl.SSLError):
            post_review(server.port, review(OPTED_IN), CA.cert_pem)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"POST /mutate-pods HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            raw.settimeout(5)
            try:
                reply = raw.recv(4096)
            except OSError:
                reply = b""
        assert not reply.startswith(b"HTTP/")
        assert server.tls.problem(NOW) == "no serving certificate loaded yet"
    finally:
        server.stop()


def test_a_new_certificate_is_served_from_the_next_connection_without_a_restart(webhook):
    server, _ = webhook
    kept = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls_client(CA.cert_pem))
    assert post_review(server.port, review(OPTED_IN), CA.cert_pem, connection=kept)[0] == 200
    new_ca = certs.make_ca(NOW)
    new_pair = certs.make_serving(new_ca, ["127.0.0.1"], NOW)
    assert server.tls.load(new_pair)
    assert not server.tls.load(new_pair)  # the same pair again: nothing to do
    assert served_certificate(server.port).serial_number == (
        x509.load_pem_x509_certificate(new_pair.cert_pem).serial_number
    )
    assert post_review(server.port, review(OPTED_IN), new_ca.cert_pem)[0] == 200
    # A kept-alive connection goes on with the certificate it started with.
    assert post_review(server.port, review(OPTED_IN), CA.cert_pem, connection=kept)[0] == 200
    kept.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        post_review(server.port, review(OPTED_IN), CA.cert_pem)


def test_concurrent_reviews_each_get_their_own_answer(webhook):
    server, recorder = webhook
    failures: list[str] = []

    def client(number: int) -> None:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", server.port, context=tls_client(CA.cert_pem)
        )
        for i in range(25):
            uid = f"{number}-{i}"
            status, answer = post_review(
                server.port, review(OPTED_IN, uid=uid), CA.cert_pem, connection=conn
            )
            if status != 200 or not isinstance(answer, dict) or answer["response"]["uid"] != uid:
                failures.append(f"{uid}: {status} {answer}")
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert len(recorder.seen) == 200


# --- the review encoder --------------------------------------------------------------------------


def test_encode_writes_what_the_api_server_reads():
    ops = [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]
    answer = json.loads(encode(patched(ops, ["careful"]), "u1"))
    assert answer["response"]["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(answer["response"]["patch"])) == ops
    assert answer["response"]["warnings"] == ["careful"]
    assert "status" not in answer["response"]
    refused = json.loads(encode(denied("no", code=503), "u2", "admission.k8s.io/v1beta1"))
    assert refused == {
        "apiVersion": "admission.k8s.io/v1beta1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "u2",
            "allowed": False,
            "status": {
                "metadata": {},
                "status": "Failure",
                "code": 503,
                "message": "no",
                "reason": "ServiceUnavailable",
            },
        },
    }
