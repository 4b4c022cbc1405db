# syntax=docker/dockerfile:1
# The machine-reconciler image (the Helm chart's default image):
#
#   docker build -t machine-reconciler:0.1.0 .
#   docker run --rm -e FLY_API_TOKEN -v "$PWD/desired_state:/etc/machine-reconciler/desired:ro" \
#       machine-reconciler:0.1.0                      # the daemon (CMD below)
#   docker run --rm -e FLY_API_TOKEN -v ... machine-reconciler:0.1.0 plan /etc/machine-reconciler/desired
#
# Two stages: `builder` builds the wheel and installs it into a venv; the final stage copies only
# that venv onto the same slim base, so no compiler, pip cache, source tree or tests ship.  This
# file copies pyproject.toml, README.md and controller/ only (the repository keeps no
# .dockerignore), so the build context's other files never reach an image layer.
#
# The base is pinned by tag and digest: the tag says what it is, the digest makes every build use
# the same bytes (a tag can be re-pushed).  Let Renovate/Dependabot move both together.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

# ------------------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller/ ./controller/

# The project's wheel, then the wheels of its dependencies (all pure Python or manylinux
# binaries: nothing compiles), then a venv with exactly those, installed offline from /wheels.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip wheel --wheel-dir /wheels /wheels/machine_reconciler-*.whl \
 && python -m venv --without-pip /opt/machine-reconciler \
 && python -m pip --python /opt/machine-reconciler/bin/python install \
        --no-index --find-links /wheels --compile machine-reconciler \
 && /opt/machine-reconciler/bin/machine-reconciler --version

# --------------------------------------------------------------------------------------- final
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="machine-reconciler" \
      org.opencontainers.image.description="Keeps Fly.io Machines equal to declarative desired-state files." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

# No package manager runs here and no build tool is added.  pip, setuptools and wheel of the base
# image are removed: the venv needs none of them at run time.  The numeric user has no login
# shell and no home; it owns nothing in the image (the code is root-owned and read-only to it).
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 10001 reconciler \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin reconciler \
 && mkdir -p /etc/machine-reconciler/desired

COPY --from=builder /opt/machine-reconciler /opt/machine-reconciler

ENV PATH=/opt/machine-reconciler/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
WORKDIR /etc/machine-reconciler

# /healthz, /readyz and /metrics (bind them beyond loopback with --health-bind 0.0.0.0:9440).
EXPOSE 9440

# For plain `docker run` (Kubernetes uses the chart's probes instead): the daemon's liveness on
# its default loopback bind.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9440/healthz', timeout=4)"]

# SIGTERM (docker stop, Kubernetes) stops the daemon gracefully: leases released, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["machine-reconciler"]
CMD ["run", "/etc/machine-reconciler/desired"]
