#!/usr/bin/env bash
# The OpenAPI document is good enough to generate a client from: generates a Python
# client from a running `chronicle serve`'s /openapi.json with openapi-python-client
# (PyPI; installed when missing) and runs a short scenario through it
# (tests/openapi_client/scenario.py: register, log in, create an API key, upload with
# the key, list, revoke). The server runs on a free port with its own fresh database,
# Redis prefix and data directory, all removed afterwards.
# Exit status: 0 only when the client generates and every step answers as documented.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
# CHRONICLE_BIN: a chronicle binary to run as it is (CI passes the one its test build made,
# which a plain `cargo build` would compile again with other dependency features);
# otherwise the debug binary, built below when missing or stale.
bin="${CHRONICLE_BIN:-$target/debug/chronicle}"

if ! command -v openapi-python-client >/dev/null 2>&1; then
  echo "installing openapi-python-client"
  python3 -m pip install --quiet --disable-pip-version-check openapi-python-client
fi
if [ -z "${CHRONICLE_BIN:-}" ]; then cargo build --quiet --bin chronicle; fi

suffix="$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
db="chronicle_gen_${suffix}"
prefix="chronicle-gen-${suffix}:"
work="$(mktemp -d /tmp/chronicle-gen.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:${port}"
server=""

cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$server" 2>/dev/null || true
  fi
  psql -q -h 127.0.0.1 -U root -d postgres \
    -c "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "${prefix}*" 2>/dev/null \
    | xargs -r -n 100 redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

DATABASE_URL="postgres://root@127.0.0.1:5432/${db}" \
  REDIS_KEY_PREFIX="$prefix" \
  BIND_ADDR="127.0.0.1:${port}" \
  DATA_DIR="$work/data" \
  LOG_FORMAT=json RUST_LOG="${RUST_LOG:-warn}" \
  "$bin" serve >"$work/server.log" 2>&1 &
server=$!

ready=""
for _ in $(seq 1 600); do
  if curl -fsS -o /dev/null "$base/health/ready" 2>/dev/null; then ready=1; break; fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "openapi-client: chronicle did not become ready; server log:"
  tail -n 50 "$work/server.log"
  exit 1
fi

curl -fsS "$base/openapi.json" -o "$work/openapi.json"
# Warnings (the NDJSON export, the tus PATCH body) leave those operations out; an error
# (an invalid document) fails here.
(cd "$work" && openapi-python-client generate --path openapi.json --meta none \
  --output-path chronicle_client) 2>&1 | tail -n 20
test -f "$work/chronicle_client/__init__.py" || { echo "openapi-client: no client generated"; exit 1; }
set +e
PYTHONPATH="$work" python3 tests/openapi_client/scenario.py "$base"
result=$?
set -e
if [ "$result" -ne 0 ]; then
  echo "openapi-client: server log:"
  tail -n 30 "$work/server.log"
fi
exit "$result"
