#!/usr/bin/env bash
# PgBouncer in transaction mode on 127.0.0.1:PORT (default 7640) in front of the local
# Postgres (127.0.0.1:5432), for the pooled test run and benchmarks (docs/deployment.md,
# "Connection pooling"; docs/testing.md). Every database name is passed through (`*`),
# each client user logs in as itself (trust, like the local Postgres), and prepared
# statements are tracked per client (`max_prepared_statements`, PgBouncer >= 1.21, which
# scripts/install-pgbouncer.sh provides). Idempotent: a PgBouncer already answering on
# PORT is reloaded with the written configuration.
set -euo pipefail
port="${1:-7640}"
dir="/var/tmp/chronicle-pgbouncer-${port}"
bin="$(bash "$(dirname "$0")/install-pgbouncer.sh")"
mkdir -p "$dir"
# PgBouncer refuses to run as root; Debian's postgres user runs it.
chown postgres:postgres "$dir"

# Users PgBouncer accepts (trust: no password is checked, but the name must be listed):
# the owner logins tests and CI use, and the runtime roles the pools log in as.
cat >"$dir/userlist.txt" <<USERS
"root" ""
"postgres" ""
"chronicle_app" ""
"chronicle_worker" ""
USERS

cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = postgres, root
pool_mode = transaction
; Protocol-level prepared statements (sqlx names every statement) are re-prepared on
; whichever server connection runs them.
max_prepared_statements = 200
; sqlx sends it at startup; the server default is right for it.
ignore_startup_parameters = extra_float_digits
max_client_conn = 2000
default_pool_size = 20
; Several test databases at once share the local Postgres (.ci/run gives it
; max_connections 300): at most 30 server connections per database and 50 per user (the
; owner and the two roles). Each app's projectors hold a connection per batch; at 20 per
; user, four tests at once kept a one-off CLI command waiting past its 5 s pool timeout.
max_db_connections = 30
max_user_connections = 50
; A refused server login (Postgres momentarily full) is retried after 1 s, not 15.
server_login_retry = 1
; Loopback: no TLS between PgBouncer and Postgres.
server_tls_sslmode = disable
; Tests drop their databases: do not keep idle server connections to them for long.
server_idle_timeout = 10
autodb_idle_timeout = 30
; Transaction mode never needs a reset; say so explicitly.
server_reset_query =
INI
chown postgres:postgres "$dir"/*

up() { psql -h 127.0.0.1 -p "$port" -U postgres -d pgbouncer -Atqc 'SHOW VERSION' >/dev/null 2>&1; }
if up; then
  psql -h 127.0.0.1 -p "$port" -U postgres -d pgbouncer -qc 'RELOAD' >/dev/null
  echo "PgBouncer on 127.0.0.1:$port reloaded"
  exit 0
fi
runuser -u postgres -- "$bin" -d "$dir/pgbouncer.ini"
for _ in $(seq 1 50); do up && break; sleep 0.1; done
up || { echo "PgBouncer did not start on $port:"; tail -n 20 "$dir/pgbouncer.log"; exit 1; }
echo "PgBouncer $("$bin" --version | head -n1 | cut -d' ' -f2) in transaction mode on 127.0.0.1:$port"
