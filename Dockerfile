# syntax=docker/dockerfile:1
#
# One image, both agents: `aim-detector` (the node DaemonSet) and `aim-matcher` (the
# controller). The manifests in daemonset/ choose the command; the image has no ENTRYPOINT.
#
#   docker build -t aim-accelerator:0.1.0 .
#   docker build --build-arg WITH_AMDSMI=true -t aim-accelerator:0.1.0-amdsmi .
#
# WITH_AMDSMI=true installs the `amdsmi` extra (the PyPI redistribution of AMD's Python
# wrapper). The wrapper loads ROCm's libamd_smi.so at run time, which this slim base does not
# have: build FROM a ROCm base (--build-arg BASE_IMAGE=<your ROCm runtime image with Python
# 3.11>). The detector prefers the wrapper that base ships beside its library
# (/opt/rocm/share/amd_smi) to the PyPI one, checks at start-up that wrapper and library
# belong together, and otherwise logs "amdsmi unavailable" once and uses sysfs
# (docs/install.md, amdsmi backend).

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG WITH_AMDSMI=false
# Same uv as the Makefile, so the lock file is read the same way here and there.
ARG UV_VERSION=0.13.8
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/aim \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first (cached while only the code changes), exactly as locked in uv.lock.
COPY pyproject.toml uv.lock README.md ./
RUN extras=""; if [ "$WITH_AMDSMI" = "true" ]; then extras="--extra amdsmi"; fi; \
    uv sync --frozen --no-dev --no-install-project $extras
COPY detector ./detector
COPY matcher ./matcher
RUN extras=""; if [ "$WITH_AMDSMI" = "true" ]; then extras="--extra amdsmi"; fi; \
    uv sync --frozen --no-dev --no-editable $extras
# Both console scripts must start in the built environment.
RUN /opt/aim/bin/aim-detector --help >/dev/null && /opt/aim/bin/aim-matcher --help >/dev/null

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="aim-accelerator" \
      org.opencontainers.image.description="AMD accelerator node labels (aim-detector) and AIM profile matching (aim-matcher)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/aim /opt/aim
ENV PATH=/opt/aim/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
CMD ["aim-detector", "--help"]
