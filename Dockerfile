# syntax=docker/dockerfile:1
#
# One image, both agents: `aim-detector` (the node DaemonSet) and `aim-matcher` (the
# controller). The manifests in daemonset/ choose the command; the image has no ENTRYPOINT.
#
#   docker build -t aim-accelerator:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg SOURCE="$(git remote get-url origin)" .
#   ... --build-arg WITH_AMDSMI=true -t aim-accelerator:0.1.0-amdsmi .
#
# REVISION and SOURCE are required: they become the image's OCI labels, so that a running image
# says which commit of which repository it was built from (the build stops without them).
#
# WITH_AMDSMI=true installs the `amdsmi` extra (the PyPI redistribution of AMD's Python
# wrapper). The wrapper loads ROCm's libamd_smi.so at run time, which this slim base does not
# have: build FROM a ROCm base (--build-arg BASE_IMAGE=<your ROCm runtime image with Python
# 3.11>). The detector prefers the wrapper that base ships beside its library
# (/opt/rocm/share/amd_smi) to the PyPI one, checks at start-up that wrapper and library
# belong together, and otherwise logs "amdsmi unavailable" once and uses sysfs
# (docs/install.md, amdsmi backend).

# The base, pinned by digest so that a rebuild cannot silently pick up another image:
# tag python:3.11-slim (Python 3.11.16 on Debian 13 "trixie"), the multi-arch index digest as
# resolved on 2026-08-18. Bump it deliberately (`docker buildx imagetools inspect
# python:3.11-slim` prints the current one).
ARG BASE_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${BASE_IMAGE} AS build
ARG WITH_AMDSMI=false
ARG REVISION=
ARG SOURCE=
# Same uv as the Makefile, so the lock file is read the same way here and there. pip installs
# it only if the wheel's sha256 is one of these (PyPI's uv 0.13.8 wheels for linux/amd64 and
# linux/arm64), and never builds it from source.
ARG UV_VERSION=0.13.8
ARG UV_SHA256_AMD64=e18a57b8b352eb7c8feb317b9f6f533c8f0ad9673fd6cf34bbe3cf1a9f6a8984
ARG UV_SHA256_ARM64=0b3e8b1a4f5e405e31e2ff33de8af4744831e9f7338539671efbd8c3c94e791d
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/aim \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN if [ -z "$REVISION" ] || [ -z "$SOURCE" ]; then \
      echo "build with --build-arg REVISION=\$(git rev-parse HEAD) --build-arg SOURCE=<repository URL>: they label the image with its provenance" >&2; \
      exit 1; \
    fi
RUN printf 'uv==%s --hash=sha256:%s --hash=sha256:%s\n' \
      "$UV_VERSION" "$UV_SHA256_AMD64" "$UV_SHA256_ARM64" > /tmp/uv-requirements.txt \
    && pip install --no-cache-dir --require-hashes --only-binary=:all: -r /tmp/uv-requirements.txt
WORKDIR /src
# Dependencies first (cached while only the code changes), exactly as locked in uv.lock.
COPY pyproject.toml uv.lock README.md ./
RUN extras=""; if [ "$WITH_AMDSMI" = "true" ]; then extras="--extra amdsmi"; fi; \
    uv sync --frozen --no-dev --no-install-project $extras
COPY aimkit ./aimkit
COPY detector ./detector
COPY matcher ./matcher
RUN extras=""; if [ "$WITH_AMDSMI" = "true" ]; then extras="--extra amdsmi"; fi; \
    uv sync --frozen --no-dev --no-editable $extras
# Every console script must start in the built environment (kubectl-aim, the kubectl plugin,
# is installed with the package like the two agents).
RUN /opt/aim/bin/aim-detector --help >/dev/null && /opt/aim/bin/aim-matcher --help >/dev/null \
    && /opt/aim/bin/kubectl-aim --help >/dev/null

# The runtime: the base's Python and the virtual environment, nothing to install with.
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=
ARG SOURCE=
LABEL org.opencontainers.image.title="aim-accelerator" \
      org.opencontainers.image.description="AMD accelerator node labels (aim-detector) and AIM profile matching (aim-matcher)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# pip, setuptools, wheel and the pip wheel ensurepip would reinstall pip from go; the build
# fails if Python can still import pip.
RUN python -m pip uninstall --yes pip setuptools wheel \
    && rm -rf /usr/local/lib/python3.*/ensurepip \
    && if python -c "import pip" 2>/dev/null; then echo "pip is still installed" >&2; exit 1; fi
COPY --from=build /opt/aim /opt/aim
ENV PATH=/opt/aim/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
CMD ["aim-detector", "--help"]
