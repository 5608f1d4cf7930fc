#!/bin/sh
# Entry point of fercomp-postgres (Dockerfile.postgres). On an empty $PGDATA: initdb (the
# superuser authenticates by peer on the local socket only), password logins over TCP
# (scram-sha-256) from anywhere on the container's networks, and the role and database
# POSTGRES_USER / POSTGRES_DB (default fercomp) with the password POSTGRES_PASSWORD or the
# content of POSTGRES_PASSWORD_FILE (a Docker secret). Then PostgreSQL in the foreground, as
# PID 1's exec, so SIGTERM is a smart shutdown and SIGINT a fast one.
set -eu
: "${PGDATA:?}"
user="${POSTGRES_USER:-fercomp}"
db="${POSTGRES_DB:-fercomp}"
# The socket goes to /tmp: the root filesystem may be read-only (a tmpfs is mounted there).
sockets=/tmp

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    password="$(cat "$POSTGRES_PASSWORD_FILE")"
  else
    password="${POSTGRES_PASSWORD:-}"
  fi
  [ -n "$password" ] || { echo "fercomp-postgres: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2; exit 1; }
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  initdb -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  {
    echo "listen_addresses = '*'"
    echo "unix_socket_directories = '$sockets'"
  } >>"$PGDATA/postgresql.conf"
  {
    echo "host all all 0.0.0.0/0 scram-sha-256"
    echo "host all all ::/0 scram-sha-256"
  } >>"$PGDATA/pg_hba.conf"
  # Socket only while the role is created: nobody can connect before it has its password.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql -v ON_ERROR_STOP=1 -q -h "$sockets" -U postgres -d postgres \
    -v user="$user" -v db="$db" -v password="$password" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
SQL
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "fercomp-postgres: initialised $PGDATA (role $user, database $db)" >&2
fi
exec postgres -D "$PGDATA"
