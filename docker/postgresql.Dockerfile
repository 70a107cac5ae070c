# syntax=docker/dockerfile:1
# PostgreSQL 15 from Debian's postgresql-15 package, for the chart's bundled database: runs as any
# non-root uid (the chart's 10001), creates its role and databases on first start, and sets the
# role's password from POSTGRES_PASSWORD at every start (a reinstall over a kept volume works).
# Built by `make images` with BASE_IMAGE = the local bookworm-slim + postgresql-15 from
# hack/build-base-image.sh (offline); with the public bookworm-slim the package comes from Debian.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
RUN [ -x /usr/lib/postgresql/15/bin/postgres ] || { apt-get update \
      && apt-get install -y --no-install-recommends postgresql-15 \
      && rm -rf /var/lib/apt/lists/*; }
LABEL org.opencontainers.image.title="heurimentor-postgresql" \
      org.opencontainers.image.description="PostgreSQL 15 (Debian bookworm postgresql-15) for the HeuriMentor chart" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/heurimentor/heurimentor" \
      org.opencontainers.image.licenses="PostgreSQL" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
COPY docker/postgresql-entrypoint.sh /usr/local/bin/heurimentor-postgresql
RUN groupadd --gid 10001 heurimentor \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/postgresql --shell /usr/sbin/nologin heurimentor \
 && install -d -m 0775 -o 10001 -g 10001 /var/lib/postgresql/data /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data/pgdata
USER 10001:10001
EXPOSE 5432
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["pg_isready", "-h", "127.0.0.1", "-q"]
ENTRYPOINT ["heurimentor-postgresql"]
