"""The webhook inside the controller, on both servers (the test API server and kube-apiserver):
the leader fills the shipped empty Secret with a CA and a serving pair and writes the CA into the
MutatingWebhookConfiguration; every replica serves that certificate and answers from its own
caches; a follower never writes; rotation replaces a pair nearing expiry, and a CA nearing
expiry is replaced with the old one still trusted until nothing it signed is served."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from matcher.controller.webhook import CERTS_EXTERNAL, WebhookSettings
from matcher.core.admission import PROFILE_KEY
from matcher.webhook import certs
from scripts.validate_manifests import serve_builtin_kinds
from tests.controller_support import (
    MI300X,
    create_node,
    gpu_labels,
    node_obj,
    start_controller,
    wait_for,
)
from tests.webhook_support import patch_of, post_review, review, served_certificate

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "aim-system"
SECRET = "aim-matcher-webhook-tls"
CONFIGURATION = "aim-matcher"

pytestmark = pytest.mark.slow


def _setup(kube: Any) -> tuple[Any, Any]:
    if kube.server is not None:
        serve_builtin_kinds(kube.server)
    api = kube.api_client()
    core: Any = client.CoreV1Api(api)
    for ns in (NAMESPACE, "ml-team"):
        core.create_namespace({"metadata": {"name": ns}})
    webhook = REPO / "daemonset" / "webhook"
    kube.kubectl("apply", "-f", str(webhook / "secret.yaml"))
    kube.kubectl("apply", "-f", str(webhook / "mutatingwebhookconfiguration.yaml"))
    create_node(core, node_obj("mi300x-0", gpu_labels(MI300X), gpus=8))
    kube.kubectl(
        "apply", "-f", str(REPO / "examples" / "profiles" / "qwen-qwen3-32b-mi300x-lat-fp8.yaml")
    )
    admission: Any = client.AdmissionregistrationV1Api(api)
    return core, admission


def _secret(core: Any) -> dict[str, bytes]:
    data = core.read_namespaced_secret(SECRET, NAMESPACE).data or {}
    return {k: base64.b64decode(v) for k, v in data.items()}


def _bundles(admission: Any) -> list[bytes]:
    obj = admission.read_mutating_webhook_configuration(CONFIGURATION)
    return [base64.b64decode(w.client_config.ca_bundle or "") for w in obj.webhooks]


def _settings(**overrides: Any) -> WebhookSettings:
    return WebhookSettings(
        host="127.0.0.1",
        port=0,
        namespace=NAMESPACE,
        extra_hosts=("127.0.0.1",),
        check_period=0.5,
        **overrides,
    )


def _start(kube: Any, identity: str, **webhook: Any) -> Any:
    return start_controller(
        kube,
        identity,
        lease_namespace=NAMESPACE,
        config_map_namespace=NAMESPACE,
        webhook=_settings(**webhook),
    )


def _ready(controller: Any) -> bool:
    return controller.webhook.problem() is None


def _evaluated(controller: Any, name: str = "qwen-qwen3-32b-mi300x-lat-fp8") -> bool:
    """The replica's own cache holds the profile with a status (until the leader has written
    one, admission refuses the pod: "has not been evaluated yet")."""
    from matcher.controller.webhook import profile_lookup  # noqa: PLC0415

    entry = profile_lookup(controller._profiles).named("AIMClusterProfile", "", name)
    if entry is None or entry.profile is None or entry.profile.status is None:
        return False
    # kube-apiserver serves the CRD's default (status: {}) before the first write: a status
    # object is there at once, the evaluation only once it carries a phase beyond Pending.
    status = entry.profile.status
    return status.resolved_node_affinity is not None or status.resources is not None


def _ready_to_admit(controller: Any) -> bool:
    return _ready(controller) and _evaluated(controller)


def _admit(controller: Any, bundle: bytes) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "qwen-",
            "labels": {PROFILE_KEY: "qwen-qwen3-32b-mi300x-lat-fp8"},
        },
        "spec": {"containers": [{"name": "inference", "image": "aim:1", "resources": {}}]},
    }
    status, answer = post_review(controller.webhook.server.port, review(pod), bundle)
    assert status == 200, answer
    assert isinstance(answer, dict)
    return answer


def _secret_writes(server: Any, agent: str) -> int:
    return sum(
        1
        for r in server.requests
        if r.verb == "patch"
        and ("/secrets/" in r.path or "mutatingwebhookconfigurations" in r.path)
        and agent in r.user_agent
    )


@pytest.mark.cluster
def test_the_leader_fills_the_secret_and_the_ca_bundle_and_every_replica_serves(kube):
    core, admission = _setup(kube)
    leader = _start(kube, "matcher-a")
    follower = None
    try:
        wait_for(leader.is_leader, 10, "leadership")
        data = wait_for(lambda: (d := _secret(core)).get(certs.TLS_CERT) and d, 10, "a cert")
        bundle = data[certs.CA_CERT]
        wait_for(lambda: _bundles(admission) == [bundle, bundle], 10, "the caBundle")
        now = datetime.now(UTC)
        ca = certs.Pair(bundle, data[certs.CA_KEY])
        assert certs.ca_problem(ca, now) is None
        serving = certs.Pair(data[certs.TLS_CERT], data[certs.TLS_KEY])
        hosts = ["aim-matcher-webhook.aim-system.svc", "127.0.0.1"]
        assert certs.serving_problem(serving, bundle, hosts, now) is None

        wait_for(lambda: _ready_to_admit(leader), 10, "the leader ready to admit")
        answer = _admit(leader, bundle)
        assert answer["response"]["allowed"] is True
        paths = [op["path"] for op in patch_of(answer)]
        assert "/spec/affinity" in paths
        assert "/metadata/annotations" in paths

        # A second replica serves the same certificate from its own caches, and writes nothing.
        follower = _start(kube, "matcher-b")
        wait_for(lambda: _ready_to_admit(follower), 10, "the follower ready to admit")
        assert not follower.is_leader()
        assert _admit(follower, bundle)["response"]["allowed"] is True
        assert (
            served_certificate(follower.webhook.server.port).serial_number
            == served_certificate(leader.webhook.server.port).serial_number
        )
        if kube.server is not None:
            assert _secret_writes(kube.server, "matcher-b") == 0
            assert _secret_writes(kube.server, "matcher-a") == 3  # CA, caBundle, serving pair
    finally:
        if follower is not None:
            follower.stop()
        leader.stop()


@pytest.mark.cluster
def test_rotation_before_expiry_keeps_admissions_trusted(kube):
    core, admission = _setup(kube)
    leader = _start(kube, "matcher-a")
    try:
        data = wait_for(lambda: (d := _secret(core)).get(certs.TLS_CERT) and d, 10, "a cert")
        bundle = data[certs.CA_CERT]
        wait_for(lambda: _ready_to_admit(leader), 10, "ready, the profile evaluated")
        first = served_certificate(leader.webhook.server.port)

        # A serving pair with under a third of its life left: replaced, same CA, same bundle.
        ca = certs.Pair(bundle, data[certs.CA_KEY])
        hosts = list(_settings().hosts)
        old = certs.make_serving(ca, hosts, datetime.now(UTC) - timedelta(days=300))
        core.patch_namespaced_secret(
            SECRET,
            NAMESPACE,
            {"data": {certs.TLS_CERT: base64.b64encode(old.cert_pem).decode(),
                      certs.TLS_KEY: base64.b64encode(old.key_pem).decode()}},
        )  # fmt: skip
        renewed = wait_for(
            lambda: (
                (d := _secret(core))[certs.TLS_CERT] not in (old.cert_pem, data[certs.TLS_CERT])
                and d
            ),
            10,
            "a renewed serving pair",
        )
        assert renewed[certs.CA_CERT] == bundle
        wait_for(
            lambda: (
                served_certificate(leader.webhook.server.port).serial_number
                not in (first.serial_number,)
            ),
            10,
            "the renewed pair served",
        )
        assert _admit(leader, bundle)["response"]["allowed"] is True

        # A CA nearing its end: a new one signs a new pair, the bundle carries both CAs.
        aging = certs.make_ca(datetime.now(UTC) - timedelta(days=3000))
        aging_serving = certs.make_serving(aging, hosts, datetime.now(UTC))
        core.patch_namespaced_secret(
            SECRET,
            NAMESPACE,
            {"data": {k: base64.b64encode(v).decode() for k, v in {
                certs.CA_CERT: aging.cert_pem, certs.CA_KEY: aging.key_pem,
                certs.TLS_CERT: aging_serving.cert_pem, certs.TLS_KEY: aging_serving.key_pem,
            }.items()}},
        )  # fmt: skip
        rotated = wait_for(
            lambda: len(certs.split_pems((d := _secret(core))[certs.CA_CERT])) == 2 and d,
            10,
            "a new CA beside the old one",
        )
        new_bundle = rotated[certs.CA_CERT]
        assert certs.split_pems(new_bundle)[1].strip() == aging.cert_pem.strip()
        wait_for(lambda: _bundles(admission) == [new_bundle, new_bundle], 10, "both CAs trusted")
        wait_for(lambda: _secret(core)[certs.TLS_CERT] != aging_serving.cert_pem, 10, "a new pair")
        # Signed by the new CA, trusted through the bundle (and not through the old CA alone).
        wait_for(lambda: _admit(leader, new_bundle)["response"]["allowed"], 10, "admission")
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            _admit(leader, aging.cert_pem)
    finally:
        leader.stop()


@pytest.mark.cluster
def test_external_certificates_are_served_and_never_written(kube, tmp_path):
    """cert-manager mode: the Secret is someone else's; the matcher serves it as it changes."""
    core, _ = _setup(kube)
    hosts = ["127.0.0.1"]
    ca = certs.make_ca(datetime.now(UTC))
    first = certs.make_serving(ca, hosts, datetime.now(UTC))

    def put(pair: certs.Pair) -> None:
        core.patch_namespaced_secret(
            SECRET,
            NAMESPACE,
            {"data": {certs.CA_CERT: base64.b64encode(ca.cert_pem).decode(),
                      certs.TLS_CERT: base64.b64encode(pair.cert_pem).decode(),
                      certs.TLS_KEY: base64.b64encode(pair.key_pem).decode()}},
        )  # fmt: skip

    put(first)
    replica = _start(kube, "matcher-a", certificates=CERTS_EXTERNAL)
    try:
        wait_for(lambda: _ready_to_admit(replica), 10, "ready, the profile evaluated")
        assert _admit(replica, ca.cert_pem)["response"]["allowed"] is True
        second = certs.make_serving(ca, hosts, datetime.now(UTC))
        put(second)
        wait_for(
            lambda: (
                served_certificate(replica.webhook.server.port).public_bytes(
                    serialization.Encoding.PEM
                )
                == second.cert_pem
            ),
            10,
            "the new pair served",
        )
        if kube.server is not None:
            assert _secret_writes(kube.server, "matcher-a") == 0
    finally:
        replica.stop()


def test_the_lookup_follows_the_cache_as_the_informers_change_it():
    """profile_lookup indexes profiles by aimId and rebuilds when the cache's contents move."""
    from matcher.controller.reconciler import cached_profile  # noqa: PLC0415
    from matcher.controller.status_writer import ProfileKey  # noqa: PLC0415
    from matcher.controller.webhook import profile_lookup  # noqa: PLC0415
    from tests.controller_support import cluster_profile  # noqa: PLC0415

    cache: dict[ProfileKey, Any] = {}

    def put(name: str, aim_id: str) -> None:
        obj = cluster_profile(name, "MI300X", aimId=aim_id)
        cached = cached_profile(obj)
        cache[cached.key] = cached

    lookup = profile_lookup(cache)
    assert lookup.by_aim_id("qwen/qwen3-32b") == []
    put("a", "qwen/qwen3-32b")
    put("b", "microsoft/phi-2")
    assert [p.name for p in lookup.by_aim_id("qwen/qwen3-32b")] == ["a"]
    put("b", "qwen/qwen3-32b")  # an update replaces the cached object
    assert sorted(p.name for p in lookup.by_aim_id("qwen/qwen3-32b")) == ["a", "b"]
    del cache[ProfileKey("AIMClusterProfile", "", "a")]
    assert [p.name for p in lookup.by_aim_id("qwen/qwen3-32b")] == ["b"]
    assert lookup.by_aim_id("microsoft/phi-2") == []
    entry = lookup.named("AIMClusterProfile", "", "b")
    assert entry is not None
    assert entry.profile is not None


def _health(controller: Any, path: str) -> tuple[int, str]:
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    assert controller.health is not None
    url = f"http://127.0.0.1:{controller.health.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.cluster
def test_readiness_metrics_and_a_denial_event(kube):
    """/readyz waits for a certificate; admissions are counted by outcome and profile; a refused
    pod leaves one Warning Event on its profile however many pods it refuses."""
    core, _ = _setup(kube)
    kube.kubectl(
        "apply", "-f", str(REPO / "examples" / "profiles" / "qwen-qwen3-32b-mi355x-lat-fp4.yaml")
    )
    # cert-manager mode with nothing issued yet: not ready, saying why.
    replica = _start(kube, "matcher-a", certificates=CERTS_EXTERNAL)
    try:
        wait_for(lambda: _health(replica, "/readyz/caches")[0] == 200, 10, "caches synced")
        status, body = _health(replica, "/readyz?verbose")
        assert status == 503
        assert "[-]webhook failed: no serving certificate loaded yet" in body
        ca = certs.make_ca(datetime.now(UTC))
        pair = certs.make_serving(ca, ["127.0.0.1"], datetime.now(UTC))
        core.patch_namespaced_secret(
            SECRET,
            NAMESPACE,
            {"data": {certs.TLS_CERT: base64.b64encode(pair.cert_pem).decode(),
                      certs.TLS_KEY: base64.b64encode(pair.key_pem).decode()}},
        )  # fmt: skip
        wait_for(lambda: _health(replica, "/readyz")[0] == 200, 10, "ready with a certificate")

        wait_for(lambda: _evaluated(replica), 10, "the fp8 profile evaluated")
        fp4 = "qwen-qwen3-32b-mi355x-lat-fp4"
        wait_for(lambda: _evaluated(replica, fp4), 10, "the fp4 profile evaluated")
        assert _admit(replica, ca.cert_pem)["response"]["allowed"] is True
        refused = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": "fp4-",
                "labels": {PROFILE_KEY: "qwen-qwen3-32b-mi355x-lat-fp4"},
            },
            "spec": {"containers": [{"name": "inference", "image": "aim:1"}]},
        }
        for _ in range(3):
            _, answer = post_review(replica.webhook.server.port, review(refused), ca.cert_pem)
            assert isinstance(answer, dict)
            assert answer["response"]["allowed"] is False
        _, metrics = _health(replica, "/metrics")
        assert (
            'aim_matcher_admissions_total{outcome="mutated",'
            'profile="aimclusterprofile/qwen-qwen3-32b-mi300x-lat-fp8"} 1.0'
        ) in metrics
        assert (
            'aim_matcher_admissions_total{outcome="denied",'
            'profile="aimclusterprofile/qwen-qwen3-32b-mi355x-lat-fp4"} 3.0'
        ) in metrics
        assert "aim_matcher_admission_duration_seconds_count 4.0" in metrics
        [line] = [
            line
            for line in metrics.splitlines()
            if line.startswith("aim_matcher_webhook_certificate_expiry_timestamp_seconds ")
        ]
        assert float(line.split()[1]) == certs.not_after(pair.cert_pem).timestamp()

        def denial_events() -> list[Any]:
            events = core.list_namespaced_event("default").items
            return [e for e in events if e.reason == "PodAdmissionDenied"]

        [event] = wait_for(denial_events, 10, "a PodAdmissionDenied Event")
        assert event.type == "Warning"
        assert event.involved_object.kind == "AIMClusterProfile"
        assert event.involved_object.name == "qwen-qwen3-32b-mi355x-lat-fp4"
        assert event.message.startswith("refused pod ml-team/fp4-*: AIMClusterProfile ")
        assert "is NotAvailable" in event.message
        # Throttled: three refusals, one Event.
        assert len(denial_events()) == 1
    finally:
        replica.stop()
