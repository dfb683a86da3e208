#!/usr/bin/env bash
# An S3 API server for the S3-mode tests: moto's server from PyPI, in memory, on
# 127.0.0.1:${MOTO_PORT:-5055}. Idempotent: reuses one that already answers.
set -euo pipefail
port="${MOTO_PORT:-5055}"
up() { curl -s -o /dev/null "http://127.0.0.1:${port}/moto-api/" ; }
if up; then exit 0; fi
# As a module, not the moto_server script: a fresh pip install's script may not be on
# PATH yet (pyenv shims need a rehash).
if ! python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
  echo "installing moto[server]"
  python3 -m pip install -q 'moto[server]'
fi
nohup python3 -m moto.server -H 127.0.0.1 -p "$port" >/tmp/chronicle-moto.log 2>&1 &
for _ in $(seq 1 60); do up && exit 0; sleep 0.5; done
echo "moto did not start; log:"; cat /tmp/chronicle-moto.log
exit 1
