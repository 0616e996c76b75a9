# Two commands matter (see README.md):
#   make demo   - run the detector on this host, then match the example profiles against the
#                 example cluster with this host added as a node (no Kubernetes needed)
#   make test   - lint, type-check, layering contracts, generated-file checks, manifest
#                 validation and the whole test suite
# Both install what they need: uv into .tools/, the locked dependencies into .venv/, and (for
# make test) kubectl, kube-apiserver, etcd, helm and promtool built from their pinned Go modules,
# and the prometheus-operator and cert-manager CRDs taken from theirs (tools/).

UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
# The built kubectl & co. come first for every recipe (scripts, docs/status-run.sh).
export PATH := $(CURDIR)/.tools/bin:$(PATH)
UV := .tools/bin/uv
PY := .venv/bin/python

.PHONY: demo test lint typecheck contracts generated-check manifests chart pytest bench crds \
	generated tools serve

# uv lives in a venv of its own, keyed by version; .tools/bin holds only the tools we run.
$(UV):
	python3 -m venv .tools/uv-$(UV_VERSION)
	.tools/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)
	mkdir -p .tools/bin && ln -sfn ../uv-$(UV_VERSION)/bin/uv $(UV)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	touch $@

demo: .venv/.synced
	$(PY) -m scripts.demo

test: lint typecheck contracts generated-check manifests chart pytest

lint: .venv/.synced
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: .venv/.synced
	.venv/bin/mypy

contracts: .venv/.synced
	.venv/bin/lint-imports

# Generated files, checked: the CRDs (daemonset/crds and the chart's crds/, one source), and the
# chart's values.schema.json and the monitoring files it carries (scripts/chart_files.py).
generated-check: .venv/.synced
	.venv/bin/aim-matcher crds --check
	$(PY) -m scripts.chart_files --check

# kube-apiserver + kubectl (k8s.io/kubernetes), etcd, helm and promtool, each built once per
# pinned version (minutes cold, a no-op after), and the prometheus-operator and cert-manager
# CRDs; see
# tools/build.sh.
tools:
	tools/build.sh k8s
	tools/build.sh etcd
	tools/build.sh helm
	tools/build.sh promtool
	tools/build.sh prometheus-operator
	tools/build.sh cert-manager
	tools/build.sh latency-proxy

manifests: .venv/.synced tools
	$(PY) -m scripts.validate_manifests
	$(PY) -m scripts.validate_monitoring

# The Helm chart: helm lint --strict (the object-by-object comparison with the kustomize bundle
# runs in pytest, tests/test_chart.py).
chart: tools
	.tools/bin/helm lint --strict charts/aim-accelerator

pytest: .venv/.synced tools
	.venv/bin/pytest -q

# Every benchmark, printing its figures. Bytecode compiled first and none written while they
# run, as in the image (Dockerfile: UV_COMPILE_BYTECODE=1 at build, PYTHONDONTWRITEBYTECODE=1
# at run time), so no start-up figure includes compiling. BENCH= picks some: BENCH="matching
# churn". The larger sizes are each module's --full (docs/benchmarks.md). controller_real runs
# kube-apiserver and etcd behind tools/latency-proxy (all three built by make tools).
BENCH ?=
bench: .venv/.synced tools
	$(UV) sync --frozen --quiet --compile-bytecode
	$(PY) -m compileall -q -j0 aimkit detector matcher benchmarks tests >/dev/null
	PYTHONDONTWRITEBYTECODE=1 $(PY) -m benchmarks $(BENCH)

crds: .venv/.synced
	.venv/bin/aim-matcher crds

# Everything generated: the CRDs, then the chart's schema and monitoring files.
generated: crds
	$(PY) -m scripts.chart_files

# The test API server in the foreground, on PORT (0 picks a free one; out/kubeconfig says which).
PORT ?= 6443
serve: .venv/.synced
	$(PY) -m tests.apiserver --port $(PORT) --crds daemonset/crds --kubeconfig out/kubeconfig
