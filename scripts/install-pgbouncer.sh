#!/usr/bin/env bash
# Makes sure a PgBouncer that tracks protocol-level prepared statements
# (`max_prepared_statements`, PgBouncer >= 1.21) is on PATH; prints its path.
#
# Transaction pooling needs it: sqlx prepares every query as a named statement and, outside
# an explicit transaction, sends Parse/Describe/Sync and Bind/Execute/Sync as two round
# trips that a transaction pooler may route to two server connections (docs/deployment.md,
# "Connection pooling"). Debian 12 ships PgBouncer 1.18, which cannot. Debian 13's
# PgBouncer binary needs Debian 13's libc, so instead of installing it this script builds
# Debian 13's *source* package (the one Debian patches and ships, fetched and verified by
# apt from deb.debian.org) against this machine's libraries. Nothing of the system's apt
# configuration changes: the newer suite's lists live in a private directory.
#
# Idempotent: a suitable pgbouncer already on PATH (or in /usr/local/bin) is reused.
set -euo pipefail
min_minor=21
prefix=/usr/local

suitable() {
  local bin="$1" v
  [ -x "$bin" ] || return 1
  v="$("$bin" --version 2>/dev/null | sed -n 's/^PgBouncer \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')"
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 1 ] || [ "$2" -ge "$min_minor" ]
}

for candidate in "$prefix/bin/pgbouncer" "$(command -v pgbouncer || true)"; do
  if [ -n "$candidate" ] && suitable "$candidate"; then echo "$candidate"; exit 0; fi
done

export DEBIAN_FRONTEND=noninteractive
# The distribution's own package first: enough on Debian 13 and later.
apt-get install -y --no-install-recommends pgbouncer >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y --no-install-recommends pgbouncer >/dev/null 2>&1; } || true
# The package starts a service on 6432 that nothing here uses.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now pgbouncer >/dev/null 2>&1 || true; fi
if suitable /usr/sbin/pgbouncer; then ln -sf /usr/sbin/pgbouncer "$prefix/bin/pgbouncer"; echo "$prefix/bin/pgbouncer"; exit 0; fi

echo "building PgBouncer from Debian 13's source package" >&2
apt-get install -y --no-install-recommends build-essential pkg-config libevent-dev libssl-dev dpkg-dev >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y --no-install-recommends build-essential pkg-config libevent-dev libssl-dev dpkg-dev >/dev/null; }
work="$(mktemp -d /var/tmp/chronicle-pgbouncer-build.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
cat >"$work/sources.list" <<SOURCES
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SOURCES
apt_private=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt_private[@]}" update -qq
(cd "$work" && apt-get "${apt_private[@]}" source --download-only pgbouncer >/dev/null 2>&1)
dsc="$(ls "$work"/pgbouncer_*.dsc | head -n1)"
# apt checked the files against the suite's signed index; dpkg-source need not.
dpkg-source --no-check -x "$dsc" "$work/src" >/dev/null
(
  cd "$work/src"
  ./configure --prefix="$prefix" --without-cares --without-pam --without-systemd --with-openssl >/dev/null
  make -j"$(nproc)" pgbouncer >/dev/null
  install -m 755 pgbouncer "$prefix/bin/pgbouncer"
)
suitable "$prefix/bin/pgbouncer" || { echo "the PgBouncer built is not >= 1.$min_minor" >&2; exit 1; }
echo "$prefix/bin/pgbouncer"
