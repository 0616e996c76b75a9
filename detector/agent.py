"""The agent's loop: probe (with a timeout), reconcile, publish, wait (with jitter), repeat.

One cycle runs each probe source in a worker thread and gives up on it after the probe timeout
(a hung read of a sysfs file must not hang the agent); a probe that raised or timed out is a
failed probe, and :func:`detector.reconcile.reconcile` then keeps that source's labels. The
reconciled labels go to the publisher (Node patch or NFD file), which writes only when
something differs. SIGTERM and SIGINT end the wait at once and the loop exits after the cycle in
progress; a second signal kills the process the default way.
"""

from __future__ import annotations

import logging
import queue
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from aimkit import signals
from aimkit.build import version
from aimkit.http import default_hosts
from aimkit.logs import settings_fields
from detector.facts import CPU_SOURCE, GPU_SOURCE, CpuFacts, GpuFacts
from detector.fence import HOLD as FENCE_HOLD
from detector.fence import DryRunPatch, NodeFence, PatchResult
from detector.labeling import cpu_labels, gpu_labels
from detector.labels import epyc_id, validate_labels
from detector.metrics import DEFAULT_METRICS_PORT, Health, Metrics, serve
from detector.probes.cpu import probe_cpu
from detector.probes.gpu import BACKENDS, GpuBackend, probe_gpus
from detector.probes.roots import HostRoots
from detector.publish import Publisher, PublishError
from detector.publish.nfd import DEFAULT_FEATURES_DIR, NfdPublisher
from detector.reconcile import (
    DEFAULT_REMOVAL_CONFIRMATIONS,
    Decision,
    ProbeResult,
    State,
    reconcile,
)

log = logging.getLogger(__name__)

MODES = ("node", "nfd")
#: Seconds before an unchanged publish failure is logged again (it is a metric all along).
REPEAT_LOG_AFTER = 600.0
GPU_BACKENDS: tuple[str, ...] = BACKENDS


@dataclass(frozen=True, slots=True)
class Reading:
    """What one successful probe yields: its labels, and device counts for the metrics."""

    labels: dict[str, str]
    devices: dict[str, int] = field(default_factory=dict)
    gpu: GpuFacts | None = None
    """The GPU facts behind the labels (their provenance goes to the metrics)."""


Probe = Callable[[], Reading]


def gpu_reading(facts: GpuFacts) -> Reading:
    labels = gpu_labels(facts)
    validate_labels(labels)
    models = Counter(d.model or f"unknown-0x{d.device_id:04x}" for d in facts.devices)
    return Reading(labels, dict(models), gpu=facts)


def cpu_reading(facts: CpuFacts) -> Reading:
    labels = cpu_labels(facts)
    validate_labels(labels)
    model = epyc_id(facts.generation) if facts.is_epyc and facts.generation else facts.vendor
    return Reading(labels, {model: facts.sockets} if facts.sockets else {})


def host_probes(roots: HostRoots, gpu_backend: GpuBackend = "auto") -> dict[str, Probe]:
    """The real probes of a host (or of a fixture tree laid out like one)."""
    return {
        GPU_SOURCE: lambda: gpu_reading(probe_gpus(roots, backend=gpu_backend)),
        CPU_SOURCE: lambda: cpu_reading(probe_cpu(roots)),
    }


class ProbeTimeout(Exception):
    pass


class _Job:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.reading: Reading | None = None
        self.error: BaseException | None = None


class _ProbeRunner:
    """Runs one source's probe on its own long-lived worker thread, waiting at most ``timeout``.

    A thread stuck in the kernel (a hung sysfs read) cannot be cancelled: while its probe is
    still running, later probes of the source fail at once instead of piling up stuck threads.
    The worker lives as long as the agent, rather than one thread per probe, so that glibc does
    not hand out a fresh malloc arena now and then and the agent's footprint stays flat.
    """

    def __init__(self, source: str, probe: Probe, timeout: float) -> None:
        self.source = source
        self._probe = probe
        self._timeout = timeout
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._last: _Job | None = None

    def run(self) -> Reading:
        if self._last is not None and not self._last.done.is_set():
            raise ProbeTimeout("the previous probe is still running")
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._serve, name=f"probe-{self.source}", daemon=True
            )
            self._worker.start()
        job = self._last = _Job()
        self._jobs.put(job)
        if not job.done.wait(self._timeout):
            raise ProbeTimeout(f"no answer within {self._timeout:g}s")
        if job.error is not None:
            raise job.error
        assert job.reading is not None
        return job.reading

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job.reading = self._probe()
            except BaseException as err:  # handed to the waiting caller
                job.error = err
            finally:
                job.done.set()


@dataclass(frozen=True, slots=True)
class CycleReport:
    decision: Decision | None
    """None when the cycle could not start (the published labels could not be read)."""
    readings: dict[str, Reading]
    """Source -> what its probe found, for the sources whose probe succeeded."""
    errors: dict[str, str] = field(default_factory=dict)
    """Source -> why its probe failed."""
    wrote: bool = False
    publish_error: str | None = None
    target: str | None = None
    """Where the labels went (``node/NAME``, the NFD file); None in a dry run."""

    @property
    def ok(self) -> bool:
        return self.decision is not None and not self.errors and self.publish_error is None


class Agent:
    """Probes, reconciles and publishes; one :meth:`run_cycle` per interval."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        publisher: Publisher | None,
        *,
        probe_timeout: float = 10.0,
        removal_confirmations: int = DEFAULT_REMOVAL_CONFIRMATIONS,
        metrics: Metrics | None = None,
        health: Health | None = None,
        clock: Callable[[], float] = time.time,
        fence: NodeFence | None = None,
    ) -> None:
        self._runners = [_ProbeRunner(s, p, probe_timeout) for s, p in probes.items()]
        self.fence = fence
        self.publisher = publisher
        self._confirmations = removal_confirmations
        self.metrics = metrics or Metrics()
        self.health = health or Health(stall_after=float("inf"))
        self._clock = clock
        #: The last publish failure logged, and when: the same failure is not logged each cycle.
        self._last_error: tuple[str, float] | None = None
        # Without a publisher (dry run) there is nothing published to start from.
        self.state: State | None = None if publisher is not None else State()

    def probe_all(self) -> tuple[list[ProbeResult], dict[str, Reading]]:
        results: list[ProbeResult] = []
        readings: dict[str, Reading] = {}
        for runner in self._runners:
            source = runner.source
            started = time.perf_counter()
            try:
                reading = runner.run()
            except Exception as err:
                reason = "timeout" if isinstance(err, ProbeTimeout) else "error"
                message = str(err) or type(err).__name__
                self.metrics.probe_errors.labels(source, reason).inc()
                results.append(ProbeResult.failed(source, message))
                log.warning(
                    "probe failed, keeping its labels",
                    extra={"source": source, "reason": reason, "error": message},
                )
            else:
                self.metrics.last_good_probe.labels(source).set(self._clock())
                self.metrics.set_devices(source, reading.devices)
                if reading.gpu is not None:
                    self.metrics.observe_gpu(reading.gpu)
                results.append(ProbeResult.ok(source, reading.labels))
                readings[source] = reading
            finally:
                self.metrics.probe_duration.labels(source).observe(time.perf_counter() - started)
        return results, readings

    def run_cycle(self) -> CycleReport:
        if self.fence is not None:
            self.fence.check()  # until proven; holds readiness meanwhile
        results, readings = self.probe_all()
        errors = {r.source: r.error or "probe failed" for r in results if not r.succeeded}
        if self.state is None:
            assert self.publisher is not None
            try:
                self.state = State.from_published(self.publisher.read())
            except PublishError as err:
                self.metrics.label_writes.labels("error").inc()
                self._publish_failed("cannot read the published labels", err)
                return self._finish(CycleReport(None, readings, errors, publish_error=str(err)))
            log.info(
                "read previously published labels",
                extra={"target": self.publisher.target, "labels": len(self.state.labels)},
            )
        decision = reconcile(self.state, results, self._confirmations)
        self.state = decision.state
        _log_decision(decision, self._confirmations)
        if self.publisher is None:
            return self._finish(CycleReport(decision, readings, errors))
        try:
            wrote = self.publisher.publish(decision.labels, complete=not errors)
        except PublishError as err:
            self.metrics.label_writes.labels("error").inc()
            self._publish_failed("publish failed", err)
            return self._finish(CycleReport(decision, readings, errors, publish_error=str(err)))
        if self._last_error is not None:
            log.info("publishing works again", extra={"target": self.publisher.target})
            self._last_error = None
        if wrote:
            self.metrics.label_writes.labels("success").inc()
        return self._finish(CycleReport(decision, readings, errors, wrote=wrote))

    def _publish_failed(self, message: str, err: PublishError) -> None:
        """Log a failure once, not every cycle of an outage (again after REPEAT_LOG_AFTER)."""
        assert self.publisher is not None
        text = f"{message}: {err}"
        now = time.monotonic()
        if (
            self._last_error is not None
            and self._last_error[0] == text
            and now - self._last_error[1] < REPEAT_LOG_AFTER
        ):
            log.debug(message, extra={"target": self.publisher.target, "error": err})
            return
        self._last_error = (text, now)
        log.error(message, extra={"target": self.publisher.target, "error": err})

    def _finish(self, report: CycleReport) -> CycleReport:
        if self.publisher is not None:
            report = replace(report, target=self.publisher.target)
        if report.decision is not None:
            self.metrics.labels.set(len(report.decision.labels))
            self.metrics.pending_removals.set(len(report.decision.pending_removal))
        self.metrics.healthy.set(1 if report.ok else 0)
        self.health.cycle_done(report.errors, report.publish_error)
        return report

    def run_loop(
        self,
        stop: threading.Event,
        interval: float,
        jitter: float = 0.1,
        rng: random.Random | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
    ) -> None:
        """Cycle every ``interval`` seconds (±``jitter`` of it) until ``stop`` is set."""
        rng = rng or random.Random()
        while not stop.is_set():
            started = time.monotonic()
            try:
                report = self.run_cycle()
            except Exception as err:  # keep the node agent alive; the next cycle may succeed
                log.exception("cycle failed", extra={"error": err})
                self.metrics.healthy.set(0)
                self.health.cycle_done({}, f"unexpected error: {err}")
            else:
                if on_cycle is not None:
                    on_cycle(report)
            period = interval * (1.0 + rng.uniform(-jitter, jitter))
            # Sliced: a SIGTERM the kernel gave another thread is seen within half a second.
            signals.wait(stop, max(0.0, period - (time.monotonic() - started)))
        self.health.stopped()

    def cleanup(self) -> bool:
        """Remove everything published (node labels and annotation, or the NFD file)."""
        if self.publisher is None:
            return False
        removed = self.publisher.cleanup()
        log.info("cleanup done", extra={"target": self.publisher.target, "removed": removed})
        return removed


def _log_decision(decision: Decision, confirmations: int) -> None:
    if decision.added or decision.changed or decision.removed:
        log.info(
            "labels changed",
            extra={
                "added": ",".join(decision.added) or "-",
                "changed": ",".join(decision.changed) or "-",
                "removed": ",".join(decision.removed) or "-",
            },
        )
    for key, runs in decision.pending_removal.items():
        log.info(
            "label no longer detected, removal pending",
            extra={"key": key, "runs": runs, "confirmations": confirmations},
        )


# --- running it from the command line -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentConfig:
    mode: str = "node"
    node_name: str | None = None
    kubeconfig: str | None = None
    nfd_features_dir: Path = DEFAULT_FEATURES_DIR
    roots: HostRoots = field(default_factory=HostRoots)
    gpu_backend: GpuBackend = "auto"
    interval: float = 60.0
    jitter: float = 0.1
    probe_timeout: float = 10.0
    removal_confirmations: int = DEFAULT_REMOVAL_CONFIRMATIONS
    once: bool = False
    dry_run: bool = False
    cleanup: bool = False
    #: Where /metrics, /healthz and /readyz listen; None: aimkit.http.default_hosts().
    metrics_address: str | None = None
    metrics_port: int = DEFAULT_METRICS_PORT
    waive_node_fence: bool = False
    fence_peer_node: str | None = None

    def stall_after(self) -> float:
        """How long without a finished cycle before liveness fails (probes + API retries)."""
        return max(3 * self.interval, self.interval + 2 * self.probe_timeout + 120)


def make_publisher(config: AgentConfig, stop: threading.Event) -> Publisher | None:
    if config.dry_run:
        return None
    if config.mode == "nfd":
        return NfdPublisher(config.nfd_features_dir)
    # Imported here so that dry runs and NFD mode never load the HTTP client.
    from aimkit.kube import connect  # noqa: PLC0415
    from detector.publish.node import NodePublisher  # noqa: PLC0415

    api = connect(config.kubeconfig, user_agent=f"aim-detector/{version()}", pool_size=2)
    log.info("kubernetes api", extra=api.log_fields())
    return NodePublisher(api, config.node_name or "", stop=stop)


def node_dry_run_patch(publisher: Publisher) -> DryRunPatch:
    """The node fence's one operation, through the node publisher's client."""
    from detector.publish.node import ApiCallError, NodePublisher  # noqa: PLC0415 (see above)

    assert isinstance(publisher, NodePublisher)

    def patch(name: str, body: Mapping[str, object]) -> PatchResult:
        try:
            publisher.dry_run_patch(name, body)
        except ApiCallError as err:
            return PatchResult(err.status or None, str(err))
        return PatchResult(200)

    return patch


def make_fence(
    config: AgentConfig, publisher: Publisher | None, metrics: Metrics, health: Health
) -> NodeFence | None:
    """The node fence for the agent's loop in node mode (not for --once, --cleanup, dry runs)."""
    if config.mode != "node" or publisher is None or config.once or config.cleanup:
        return None
    return NodeFence(
        node_dry_run_patch(publisher),
        config.node_name or "",
        peer_node=config.fence_peer_node,
        waived=config.waive_node_fence,
        registry=metrics.registry,
        hold=health.hold,
    )


def run(
    config: AgentConfig,
    *,
    stop: threading.Event | None = None,
    on_cycle: Callable[[CycleReport], None] | None = None,
) -> int:
    """Run as configured (cleanup, one cycle, or the loop); the process exit code."""
    stop = stop or threading.Event()
    _handle_signals(stop)
    if not config.dry_run:
        log.info("settings", extra=settings_fields(config))
    try:
        publisher = make_publisher(config, stop)
    except Exception as err:  # kubeconfig missing or invalid, no in-cluster credentials
        log.error("cannot set up publishing", extra={"mode": config.mode, "error": err})
        return 1
    metrics = Metrics()
    health = Health(stall_after=config.stall_after())
    agent = Agent(
        host_probes(config.roots, config.gpu_backend),
        publisher,
        probe_timeout=config.probe_timeout,
        removal_confirmations=config.removal_confirmations,
        metrics=metrics,
        health=health,
        fence=make_fence(config, publisher, metrics, health),
    )
    if config.cleanup:
        try:
            agent.cleanup()
        except PublishError as err:
            log.error("cleanup failed", extra={"error": err})
            return 1
        return 0
    if config.once:
        report = agent.run_cycle()
        if on_cycle is not None:
            on_cycle(report)
        return 0 if report.ok else 1

    server = None
    if config.metrics_port and not config.dry_run:
        hosts = [config.metrics_address] if config.metrics_address else default_hosts()
        try:
            holds = (FENCE_HOLD,) if agent.fence is not None else ()
            server = serve(metrics, health, hosts, config.metrics_port, holds=holds)
        except OSError as err:
            log.error(
                "cannot serve metrics",
                extra={"addresses": ",".join(hosts), "port": config.metrics_port, "error": err},
            )
            return 1
        log.info("serving metrics", extra={"addresses": ",".join(server.addresses)})
    log.info(
        "agent started",
        extra={
            "target": publisher.target if publisher else "dry-run",
            "interval_s": config.interval,
            "removal_confirmations": config.removal_confirmations,
        },
    )
    try:
        agent.run_loop(stop, config.interval, config.jitter, on_cycle=on_cycle)
    finally:
        if server is not None:
            server.stop()
    log.info("agent stopped")
    return 0


def _handle_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may install handlers (tests run agents in threads)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
