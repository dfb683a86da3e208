#!/usr/bin/env bash
# Starts a clamd for development and CI that needs no network: its only database is the
# project's own signatures/ (EICAR test signatures), so it starts offline in about a second.
# Installs nothing (CI's .ci/run installs Debian's clamav-daemon). Idempotent: if something
# already answers PING on the port, it is left alone.
#
#   scripts/start-clamd.sh            # then: export CLAMD_ADDR=127.0.0.1:3310
#
# Environment: CLAMD_PORT (default 3310), CLAMD_STATE_DIR (default /tmp/chronicle-clamd),
# CLAMD_WAIT_SECS (default 60), CLAMD_STREAM_MAX (default 64M).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${CLAMD_PORT:-3310}"
state="${CLAMD_STATE_DIR:-/tmp/chronicle-clamd}"
wait_secs="${CLAMD_WAIT_SECS:-60}"
stream_max="${CLAMD_STREAM_MAX:-64M}"

# PING over TCP with bash's /dev/tcp; clamd answers "PONG" (z-prefixed commands end in NUL).
ping_clamd() {
  local reply
  reply="$( { exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'zPING\0' >&3 && timeout 2 head -c 5 <&3; } 2>/dev/null | tr -d '\0' )" || true
  [ "$reply" = "PONG" ]
}

if ping_clamd; then
  echo "clamd already answers on 127.0.0.1:$port"
  exit 0
fi

command -v clamd >/dev/null || { echo "clamd is not installed (apt-get install clamav-daemon)" >&2; exit 1; }

mkdir -p "$state/db"
# Only our signatures: clamd loads every database file in the directory.
rm -f "$state/db/"*
cp signatures/*.ndb signatures/*.hdb signatures/*.hsb "$state/db/"
# clamd drops privileges to User; that user must read the database and write the log.
user="root"
if id clamav >/dev/null 2>&1; then user="clamav"; fi
chown -R "$user" "$state"

cat >"$state/clamd.conf" <<CONF
TCPSocket $port
TCPAddr 127.0.0.1
DatabaseDirectory $state/db
LogFile $state/clamd.log
LogTime yes
PidFile $state/clamd.pid
TemporaryDirectory /tmp
User $user
Foreground no
StreamMaxLength $stream_max
MaxThreads 4
ReadTimeout 60
CommandReadTimeout 10
SelfCheck 0
ScanArchive yes
CONF

echo "starting clamd on 127.0.0.1:$port (config $state/clamd.conf)"
clamd --config-file="$state/clamd.conf"

for _ in $(seq 1 "$wait_secs"); do
  if ping_clamd; then
    echo "clamd answers PONG on 127.0.0.1:$port"
    exit 0
  fi
  sleep 1
done
echo "clamd did not answer PING within ${wait_secs}s; log follows" >&2
tail -n 30 "$state/clamd.log" >&2 || true
exit 1
