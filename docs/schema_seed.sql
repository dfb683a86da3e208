-- A realistically sized, deterministic dataset for the EXPLAIN output in docs/schema.md.
-- Run it as the database owner (a superuser locally: row-level security does not apply
-- to it) into a scratch database migrated with `chronicle migrate`:
--
--   DATABASE_URL=postgres://root@127.0.0.1:5432/chronicle_explain chronicle migrate
--   psql -h 127.0.0.1 -d chronicle_explain -f docs/schema_seed.sql
--
-- 20 tenants × 50 users; 60,000 files; 100,000 file_versions over 180 days (89 %
-- completed, 3 % virus_failed, 2 % failed, 6 % duplicate; one completed version in five
-- repeats an earlier blob of its tenant); one job per version; 300,000 audit_logs rows,
-- of which 103,000 are uploads and virus detections. setseed makes it repeatable.
SELECT setseed(0.42);

INSERT INTO tenants (tenant_id, name, created_by, created_at)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(t), 12, '0'))::uuid, 'tenant ' || t,
       ('00000000-0000-7000-9000-' || lpad(to_hex(t * 100), 12, '0'))::uuid,
       timestamptz '2026-01-01 00:00Z'
  FROM generate_series(1, 20) t;

INSERT INTO users (tenant_id, id, handle, name, email, role, created_at, updated_at)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(t), 12, '0'))::uuid,
       ('00000000-0000-7000-9000-' || lpad(to_hex(t * 100 + u), 12, '0'))::uuid,
       'user' || t || '_' || u, 'User ' || u, 'u' || t || '_' || u || '@example.com',
       CASE WHEN u = 0 THEN 'admin' ELSE 'user' END,
       timestamptz '2026-01-01 00:00Z', timestamptz '2026-01-01 00:00Z'
  FROM generate_series(1, 20) t, generate_series(0, 49) u;

-- File f belongs to tenant 1 + f % 20 and user (f / 20) % 50 of it; one in 23 is
-- deleted, a third of those purged.
INSERT INTO files (tenant_id, id, owner_id, display_name, created_at, updated_at,
                   is_deleted, deleted_at, purged, latest_version, latest_status)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(1 + f % 20), 12, '0'))::uuid,
       ('00000000-0000-7000-a000-' || lpad(to_hex(f), 12, '0'))::uuid,
       ('00000000-0000-7000-9000-' || lpad(to_hex((1 + f % 20) * 100 + (f / 20) % 50), 12, '0'))::uuid,
       'file-' || f || '.bin',
       timestamptz '2026-05-01 00:00Z' + (f * interval '259 seconds'),
       timestamptz '2026-05-01 00:00Z' + (f * interval '259 seconds'),
       f % 23 = 0, CASE WHEN f % 23 = 0 THEN timestamptz '2026-10-01 00:00Z' END,
       f % 23 = 0 AND (f / 23) % 3 = 0, NULL, NULL
  FROM generate_series(0, 59999) f;

-- Versions: files 0..39999 get two versions, the rest one (100,000 in all).
CREATE TEMP TABLE seed_versions AS
SELECT f, v, random() AS r, random() AS dup, random() AS lat,
       timestamptz '2026-05-01 00:00Z' + (f * interval '259 seconds') + ((v - 1) * interval '3 days') AS at
  FROM generate_series(0, 59999) f, generate_series(1, 2) v
 WHERE v = 1 OR f < 40000;

INSERT INTO file_versions (tenant_id, file_id, version_number, status, filename, mime_type,
                           size_bytes, sha256, storage_key, attempts, last_error,
                           created_at, updated_at, processed_at)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(1 + f % 20), 12, '0'))::uuid,
       ('00000000-0000-7000-a000-' || lpad(to_hex(f), 12, '0'))::uuid, v, s.status,
       'file-' || f || '.bin', 'application/octet-stream',
       1000 + (h * 7919) % 5000000, b.sha,
       CASE WHEN s.status = 'completed' THEN 'blobs/' || b.sha END,
       CASE WHEN s.status = 'failed' THEN 3 ELSE 1 END,
       CASE WHEN s.status = 'virus_failed' THEN 'virus found: Test.EICAR'
            WHEN s.status = 'failed' THEN 'scanner unavailable' END,
       at, at + l.secs * interval '1 second',
       at + l.secs * interval '1 second'
  FROM seed_versions,
       LATERAL (SELECT (CASE WHEN r < 0.89 THEN 'completed' WHEN r < 0.92 THEN 'virus_failed'
                             WHEN r < 0.94 THEN 'failed' ELSE 'duplicate' END)::file_status AS status) s,
       -- One completed version in five repeats the bytes of an earlier file of its tenant.
       -- (f - 20·n is a file of the same tenant; its first version's bytes are 2·f' + 1.)
       LATERAL (SELECT CASE WHEN dup < 0.2 AND f >= 1000 THEN 2 * (f - 20 * (1 + floor(dup * 250)::int)) + 1
                            ELSE f * 2 + v END AS h) k,
       LATERAL (SELECT md5(k.h::text) || md5('x' || k.h) AS sha) b,
       -- Latency: mostly seconds, a long tail to minutes (exp of a uniform).
       LATERAL (SELECT round(exp(lat * 7))::int AS secs) l;

INSERT INTO jobs (tenant_id, id, file_id, version_number, job_type, payload, attempts,
                  max_attempts, status, last_error, created_at, updated_at)
SELECT tenant_id, gen_random_uuid(), file_id, version_number, 'process_version', '{}',
       attempts, 3,
       (CASE WHEN status = 'failed' THEN 'dead_letter' ELSE 'succeeded' END)::job_status,
       last_error, created_at, updated_at
  FROM file_versions;

-- The audit log: an upload and (for virus_failed versions) a detection per version,
-- then filler events (renames, logins …) up to 300,000 rows.
INSERT INTO audit_logs (id, tenant_id, actor, actor_user_id, actor_type, action, target_type,
                        target_id, sequence, details, created_at)
SELECT row_number() OVER (ORDER BY at, action), tenant_id, 'system:seed', NULL, 'system',
       action, 'file', file_id::text, 1, '{}', at
  FROM (SELECT tenant_id, file_id, 'file.uploaded' AS action, created_at AS at FROM file_versions
        UNION ALL
        SELECT tenant_id, file_id, 'file.virus_failed', processed_at FROM file_versions
         WHERE status = 'virus_failed'
        UNION ALL
        SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(1 + n % 20), 12, '0'))::uuid,
               gen_random_uuid(), (ARRAY['file.renamed', 'file.tagged', 'session.started'])[1 + n % 3],
               timestamptz '2026-05-01 00:00Z' + n * interval '80 seconds'
          FROM generate_series(1, 300000 - (SELECT count(*) FROM file_versions)
                                      - (SELECT count(*) FROM file_versions WHERE status = 'virus_failed')) n
       ) e;

-- Autovacuum would set the visibility map in production; index-only scans rely on it.
VACUUM ANALYZE;
