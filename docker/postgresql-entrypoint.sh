#!/bin/sh
# The bundled database's start: initdb on an empty volume, then (every start) the role's password
# from POSTGRES_PASSWORD and the databases in POSTGRES_DATABASES, on a private socket; then the
# server itself in the foreground, listening on all addresses with password (scram) logins.
set -eu
: "${PGDATA:?PGDATA is not set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set (the chart takes it from its database Secret)}"
user=${POSTGRES_USER:-heurimentor}
databases=${POSTGRES_DATABASES:-}
private=$(mktemp -d)

if [ ! -s "${PGDATA}/PG_VERSION" ]; then
    printf '%s' "${POSTGRES_PASSWORD}" > "${private}/pw"
    initdb --pgdata="${PGDATA}" --username="${user}" --pwfile="${private}/pw" --encoding=UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "${private}/pw"
    # Every address, passwords only (initdb writes loopback lines only).
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >> "${PGDATA}/pg_hba.conf"
    echo "heurimentor-postgresql: initialized ${PGDATA} for role ${user}" >&2
fi

# Password and databases through a socket only this script can reach (no TCP listener yet).
pg_ctl --pgdata="${PGDATA}" --silent --wait -o "-c listen_addresses='' -c unix_socket_directories='${private}'" start >/dev/null
psql --host="${private}" --username="${user}" --dbname=postgres --quiet --no-psqlrc -v ON_ERROR_STOP=1 \
    -v user="${user}" -v pw="${POSTGRES_PASSWORD}" <<'SQL'
ALTER ROLE :"user" WITH PASSWORD :'pw';
SQL
for db in ${databases}; do
    psql --host="${private}" --username="${user}" --dbname=postgres --quiet --no-psqlrc -v ON_ERROR_STOP=1 \
        -v db="${db}" -v user="${user}" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SQL
done
pg_ctl --pgdata="${PGDATA}" --silent --wait stop >/dev/null
rmdir "${private}" 2>/dev/null || true

exec postgres -D "${PGDATA}" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
