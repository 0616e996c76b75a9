# Two commands matter (see README.md):
#   make demo   - run the detector on this host, then match the example profiles against the
#                 example cluster with this host added as a node (no Kubernetes needed)
#   make test   - lint, type-check, layering contracts, generated-file checks, manifest
#                 validation and the whole test suite
# Both install what they need: uv into .tools/, the locked dependencies into .venv/.

UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
UV := .tools/bin/uv
PY := .venv/bin/python

.PHONY: demo test lint typecheck contracts generated-check manifests pytest bench crds kubectl serve

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

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

kubectl:
	@command -v kubectl >/dev/null || { apt-get update -qq && apt-get install -y -qq kubernetes-client; }

manifests: .venv/.synced kubectl
	$(PY) -m scripts.validate_manifests

pytest: .venv/.synced kubectl
	.venv/bin/pytest -q

bench: .venv/.synced
	$(PY) -m benchmarks

crds: .venv/.synced
	.venv/bin/aim-matcher crds --out daemonset/crds

serve: .venv/.synced
	$(PY) -m tests.apiserver --port 6443 --crds daemonset/crds --kubeconfig out/kubeconfig
