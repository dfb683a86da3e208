#!/usr/bin/env bash
# Produces the front-end files the web console embeds (src/console/assets/vendor/) from
# the npm registry, exactly as web/package-lock.json pins them, and checks them.
#
#   scripts/build-web.sh           npm ci in web/, then copy the files below into vendor/
#   scripts/build-web.sh --check   build into a temporary folder and fail when the committed
#                                  vendor/ differs from it (CI runs this, .ci/run)
#
# Node.js is only needed here: building and running Chronicle use the committed files.
set -euo pipefail
cd "$(dirname "$0")/.."

VENDOR=src/console/assets/vendor
# package path in node_modules → name in vendor/. Only what the console loads, plus each
# library's licence.
FILES=(
  "htmx.org/dist/htmx.min.js htmx.min.js"
  "htmx.org/LICENSE htmx.LICENSE.txt"
  "tus-js-client/dist/tus.min.js tus.min.js"
  "tus-js-client/LICENSE tus-js-client.LICENSE.txt"
  "uplot/dist/uPlot.iife.min.js uPlot.iife.min.js"
  "uplot/dist/uPlot.min.css uPlot.min.css"
  "uplot/LICENSE uplot.LICENSE.txt"
  "swagger-ui-dist/swagger-ui-bundle.js swagger-ui-bundle.js"
  "swagger-ui-dist/swagger-ui.css swagger-ui.css"
  "swagger-ui-dist/LICENSE swagger-ui.LICENSE.txt"
)

check=false
[ "${1:-}" = "--check" ] && check=true

command -v npm >/dev/null 2>&1 || { echo "build-web: npm is required (apt-get install nodejs npm)"; exit 2; }

(cd web && npm ci --no-audit --no-fund --ignore-scripts --silent)

out=$VENDOR
if $check; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
else
  rm -rf "$VENDOR"
fi
mkdir -p "$out"
for entry in "${FILES[@]}"; do
  read -r from to <<<"$entry"
  cp "web/node_modules/$from" "$out/$to"
done

if $check; then
  if diff -r "$out" "$VENDOR" >/dev/null; then
    echo "build-web: vendor files match web/package-lock.json (${#FILES[@]} files)"
  else
    echo "build-web: src/console/assets/vendor differs from what web/package-lock.json produces:"
    diff -rq "$out" "$VENDOR" || true
    echo "build-web: run scripts/build-web.sh and commit the result"
    exit 1
  fi
else
  echo "build-web: wrote ${#FILES[@]} files to $VENDOR"
fi
