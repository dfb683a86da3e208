#!/usr/bin/env bash
# Search benchmark (docs/benchmarks.md, "Search"): one tenant with N files (default
# 100,000; a tenth tagged), three of them named like "Q3 report". Runs the query
# `GET /v1/files?q=report` builds (src/api/files/list.rs), as the API's role under
# row-level security, prints its plan (docs/schema.md) and the median of 15 timed runs.
# The database is migrated from migrations/ with psql and dropped at the end; the read
# tables are filled with SQL, since the benchmark measures the query, not the projection.
#
#   scripts/bench_search.sh [N]      (needs psql; PG* variables as for psql, default root@127.0.0.1)
set -euo pipefail
N=${1:-100000}
DB=chronicle_bench_search_$$
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-root}
cd "$(dirname "$0")/.."
createdb "$DB"
trap 'dropdb --if-exists "$DB"' EXIT
for f in migrations/*.sql; do
  psql -q -v ON_ERROR_STOP=1 -d "$DB" -f "$f" >/dev/null
done
TENANT=0190a000-0000-7000-8000-000000000001
OWNER=0190a000-0000-7000-8000-000000000002
psql -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL
INSERT INTO files (tenant_id, id, owner_id, display_name, created_at, updated_at, current_version, size_bytes)
SELECT '$TENANT', gen_random_uuid(), '$OWNER',
       CASE WHEN i IN (7, $N / 2, $N - 3) THEN 'Q' || (i % 4 + 1) || ' report ' || i
            ELSE 'document-' || i || '-' || md5(i::text) || '.pdf' END,
       now() - make_interval(secs => i), now() - make_interval(secs => i), 1, i
  FROM generate_series(1, $N) AS i;
INSERT INTO file_tags (tenant_id, file_id, tag)
SELECT tenant_id, id, 'project-' || (abs(hashtext(id::text)) % 500)
  FROM files WHERE abs(hashtext(id::text)) % 10 = 0;
ANALYZE files; ANALYZE file_tags;
SQL
QUERY="SELECT f.id, f.display_name FROM files f
 WHERE f.tenant_id = '$TENANT' AND NOT f.purged AND f.is_deleted = false
   AND f.id IN (SELECT chronicle_search_file_ids(lower('%report%')))
 ORDER BY f.created_at DESC, f.id DESC LIMIT 51"
INNER="SELECT s.id FROM files s WHERE lower(s.display_name) LIKE '%report%' ESCAPE '\\' AND s.tenant_id = '$TENANT'
 UNION SELECT t.file_id FROM file_tags t WHERE lower(t.tag) LIKE '%report%' ESCAPE '\\' AND t.tenant_id = '$TENANT'"
AS_APP="SET ROLE chronicle_app; SELECT set_config('app.tenant_id', '$TENANT', false);"
echo "files: $N, tagged: $(psql -qtA -d "$DB" -c 'SELECT count(DISTINCT file_id) FROM file_tags')"
echo "matches: $(psql -qtA -d "$DB" -c "$AS_APP" -c "SELECT count(*) FROM ($QUERY) q" | tail -1)"
echo "-- the listing, as chronicle_app under row-level security:"
psql -qtA -d "$DB" -c "$AS_APP" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) $QUERY" | tail -n +2
echo "-- inside chronicle_search_file_ids (runs as chronicle_worker):"
psql -qtA -d "$DB" -c "SET ROLE chronicle_worker" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) $INNER"
# 15 runs on one connection (as the API's pooled connections run it: the function's
# plan is cached per connection), each timed by psql end to end.
{ echo "$AS_APP"; echo '\timing on'; for _ in $(seq 15); do echo "$QUERY;"; done; } \
  | psql -qtA -d "$DB" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -15 | sort -n \
  | awk '{a[NR]=$1} END {printf "query ms (psql, 15 runs): min %.2f median %.2f max %.2f\n", a[1], a[int((NR+1)/2)], a[NR]}'
