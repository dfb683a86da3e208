#!/usr/bin/env bash
# An S3 API server for the S3-mode tests: moto's server from PyPI, in memory, on
# 127.0.0.1:${MOTO_PORT:-5055}. Idempotent: reuses one that already answers.
set -euo pipefail
port="${MOTO_PORT:-5055}"
up() { curl -s -o /dev/null "http://127.0.0.1:${port}/moto-api/" ; }
if up; then exit 0; fi
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto[server]"
  python3 -m pip install -q 'moto[server]'
fi
nohup moto_server -H 127.0.0.1 -p "$port" >/tmp/chronicle-moto.log 2>&1 &
for _ in $(seq 1 60); do up && exit 0; sleep 0.5; done
echo "moto did not start; log:"; cat /tmp/chronicle-moto.log
exit 1
