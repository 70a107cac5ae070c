# syntax=docker/dockerfile:1
# The Aquila2TrainingJob operator: heurimentor operator run (kopf). No torch in this image.
# Built by `make images` (hack/build-images.sh) with buildah, offline: the context holds the
# sources and wheels/ (the pinned wheelhouse, hack/constraints.txt); BASE_IMAGE is the local
# bookworm-slim + python3 from hack/build-base-image.sh, BUILD_BASE_IMAGE the same + a C compiler
# and Python's headers (the DMU's kernels). Elsewhere: the public bookworm-slim for both.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
ARG BUILD_BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BASE_IMAGE} AS python
# bookworm's python3 (3.11). The local base has it already; the public one gets it from Debian.
RUN python3 -c 'import ensurepip, venv' 2>/dev/null || { apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; }

# Stage 1: build the project's wheel (its C extension too: gcc and Python's headers are in this
# stage only) and install it, with exactly the extra this image runs, into a virtual environment,
# from wheels only (no index). The same Debian suite as the runtime, so the same python3.
FROM ${BUILD_BASE_IMAGE} AS build
RUN { command -v gcc && test -f "$(python3 -c 'import ensurepip, sysconfig; print(sysconfig.get_paths()["include"])')/Python.h"; } >/dev/null 2>&1 \
 || { apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev ca-certificates \
      && rm -rf /var/lib/apt/lists/*; }
COPY src/ /src/
RUN --mount=type=bind,source=wheels,target=/wheels \
    python3 -m venv /opt/heurimentor \
 && /opt/heurimentor/bin/pip install --quiet --no-index --find-links /wheels --no-cache-dir \
      -c /src/hack/constraints.txt "/src[operator]" \
 && /opt/heurimentor/bin/pip uninstall --quiet -y pip setuptools

# Stage 2: the runtime: python3 and the environment, no compilers, no pip, no sources.
FROM python
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="heurimentor-operator" \
      org.opencontainers.image.description="The Aquila2TrainingJob operator: heurimentor operator run (kopf). No torch in this image." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/heurimentor/heurimentor" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
RUN groupadd --gid 10001 heurimentor \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin heurimentor
COPY --from=build /opt/heurimentor /opt/heurimentor
# Byte code was compiled at install: the root filesystem can be read-only.
ENV PATH=/opt/heurimentor/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]
ENTRYPOINT ["heurimentor"]
CMD ["operator", "run"]
