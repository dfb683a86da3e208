#!/usr/bin/env bash
# A streaming read replica of the local Postgres primary (127.0.0.1:5432) for the
# read-replica tests and benchmarks: `pg_basebackup -R` into its own cluster on
# 127.0.0.1:PORT (default 7501), hot standby, run as the `postgres` OS user with
# Debian's Postgres 15 binaries. DELAY (e.g. `2s`, default none) sets
# `recovery_min_apply_delay`, a replica that is always that far behind (the
# read-your-writes test). Idempotent: an existing replica on PORT is reused (its delay
# updated); a stopped one is started again.
#
# The primary must allow replication from 127.0.0.1: `wal_level` replica or logical,
# `max_wal_senders` > 0 and a `host replication` line in pg_hba.conf. The pg_hba line
# is added (and the configuration reloaded) when missing; wal_level needs a restart,
# which this script does not do: it stops with a message instead.
set -euo pipefail
port="${1:-7501}"
delay="${2:-0}"
bin=/usr/lib/postgresql/15/bin
dir="/var/tmp/chronicle-replica-${port}"
as_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi; }
psql_primary() { psql -h 127.0.0.1 -p 5432 -U postgres -Atqc "$1"; }

wal_level="$(psql_primary 'SHOW wal_level')"
senders="$(psql_primary 'SHOW max_wal_senders')"
if [ "$wal_level" = minimal ] || [ "$senders" = 0 ]; then
  echo "the primary needs wal_level=replica and max_wal_senders>0 (restart required)"; exit 1
fi
hba="$(psql_primary 'SHOW hba_file')"
if ! grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
  echo "allowing replication from 127.0.0.1 in $hba"
  echo 'host replication all 127.0.0.1/32 trust' >>"$hba"
  psql_primary 'SELECT pg_reload_conf()' >/dev/null
  sleep 0.5
fi

up() { pg_isready -h 127.0.0.1 -p "$port" -q; }
if [ ! -f "$dir/standby.signal" ]; then
  rm -rf "$dir"
  install -d -o postgres -g postgres -m 700 "$dir"
  # A replication slot keeps the WAL the replica has not received yet (without one, a
  # busy primary may recycle it first and the replica stops for good). A stopped
  # replica's slot holds WAL on the primary: drop it (SELECT
  # pg_drop_replication_slot('chronicle_replica_PORT')) when the replica is retired.
  slot="chronicle_replica_${port}"
  psql_primary "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                 WHERE slot_name = '$slot' AND NOT active" >/dev/null
  as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p 5432 -U postgres -D "$dir" -R -X stream -c fast \
    -C -S "$slot"
  # Debian keeps the primary's configuration under /etc: the replica gets its own.
  as_pg tee "$dir/pg_hba.conf" >/dev/null <<HBA
local all all trust
host all all 127.0.0.1/32 trust
HBA
  as_pg touch "$dir/postgresql.conf" "$dir/pg_ident.conf"
  cat >>"$dir/postgresql.auto.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
hot_standby = on
hot_standby_feedback = on
max_connections = 200
shared_preload_libraries = ''
CONF
fi
# The delay, replaced on every run (the last setting in the file wins).
sed -i '/^recovery_min_apply_delay/d' "$dir/postgresql.auto.conf"
echo "recovery_min_apply_delay = '$delay'" >>"$dir/postgresql.auto.conf"
# A hot standby refuses to start with fewer connections than its primary allows.
primary_max="$(psql_primary 'SHOW max_connections')"
sed -i '/^max_connections/d' "$dir/postgresql.auto.conf"
echo "max_connections = $(( primary_max > 200 ? primary_max : 200 ))" >>"$dir/postgresql.auto.conf"
if up; then
  as_pg "$bin/pg_ctl" -D "$dir" reload >/dev/null
else
  # A replica stopped without a restartpoint replays its WAL backlog first: on a busy
  # machine that takes more than pg_ctl's default minute.
  as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/replica.log" -w -t 300 start >/dev/null
fi
for _ in $(seq 1 60); do up && break; sleep 0.5; done
up || { echo "the replica did not start; log:"; tail -20 "$dir/replica.log"; exit 1; }
in_recovery="$(psql -h 127.0.0.1 -p "$port" -U postgres -Atqc 'SELECT pg_is_in_recovery()')"
[ "$in_recovery" = t ] || { echo "127.0.0.1:$port is not a standby"; exit 1; }
echo "replica on 127.0.0.1:$port (delay $delay)"
