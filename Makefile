# Two commands matter (see README.md):
#   make demo   - run the detector on this host, then match the example profiles against the
#                 example cluster with this host added as a node (no Kubernetes needed)
#   make test   - lint, type-check, layering contracts, generated-file checks, manifest
#                 validation and the whole test suite
# Both install what they need: uv into .tools/, the locked dependencies into .venv/, and (for
# make test) kubectl, kube-apiserver and etcd built from their pinned Go modules (tools/).

UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
# The built kubectl & co. come first for every recipe (scripts, docs/status-run.sh).
export PATH := $(CURDIR)/.tools/bin:$(PATH)
UV := .tools/bin/uv
PY := .venv/bin/python

.PHONY: demo test lint typecheck contracts generated-check manifests pytest bench crds tools serve

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

test: lint typecheck contracts generated-check manifests pytest

lint: .venv/.synced
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: .venv/.synced
	.venv/bin/mypy

contracts: .venv/.synced
	.venv/bin/lint-imports

generated-check: .venv/.synced
	.venv/bin/aim-matcher crds --check --out daemonset/crds

# kube-apiserver + kubectl (k8s.io/kubernetes) and etcd, each built once per pinned version
# (minutes cold, a no-op after); see tools/build.sh.
tools:
	tools/build.sh k8s
	tools/build.sh etcd

manifests: .venv/.synced tools
	$(PY) -m scripts.validate_manifests

pytest: .venv/.synced tools
	.venv/bin/pytest -q

bench: .venv/.synced
	$(PY) -m benchmarks

crds: .venv/.synced
	.venv/bin/aim-matcher crds --out daemonset/crds

serve: .venv/.synced
	$(PY) -m tests.apiserver --port 6443 --crds daemonset/crds --kubeconfig out/kubeconfig
