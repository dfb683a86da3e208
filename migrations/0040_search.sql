-- Search (`GET /v1/files?q=`): a case-insensitive substring of a file's display name or
-- of one of its tags, served by trigram GIN indexes. pg_trgm ships with PostgreSQL
-- (contrib) and is a trusted extension, so the database owner who runs the migrations
-- may create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX files_name_trgm ON files USING gin (lower(display_name) gin_trgm_ops);
CREATE INDEX file_tags_trgm ON file_tags USING gin (lower(tag) gin_trgm_ops);

-- Why a function: under the tenant_isolation policy (chronicle_app), a qual that is not
-- LEAKPROOF (LIKE, lower()) may not run before the policy's own qual, so it can never be
-- an index condition and every search would scan the tenant's rows. This function runs
-- as chronicle_worker, whose policy is `true`, so the trigram indexes serve the LIKE; the
-- tenant is not a parameter but the caller's own `app.tenant_id` — the very setting the
-- tenant_isolation policy reads — so it returns nothing RLS would not have shown the
-- caller, and nothing at all when the setting is absent. PL/pgSQL, so each connection
-- plans it once. `pattern` is a LIKE pattern with `\` as its escape character.
CREATE FUNCTION chronicle_search_file_ids(pattern text) RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public ROWS 100 AS $$
DECLARE
  tenant uuid := nullif(current_setting('app.tenant_id', true), '')::uuid;
BEGIN
  IF tenant IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY
    SELECT s.id FROM files s
     WHERE lower(s.display_name) LIKE pattern ESCAPE '\' AND s.tenant_id = tenant
    UNION
    SELECT t.file_id FROM file_tags t
     WHERE lower(t.tag) LIKE pattern ESCAPE '\' AND t.tenant_id = tenant;
END
$$;
-- Owned by the worker role (its policy lets the index serve the query). Changing the
-- owner needs the new owner to be able to create in the schema: granted for that
-- statement only.
GRANT CREATE ON SCHEMA public TO chronicle_worker;
ALTER FUNCTION chronicle_search_file_ids(text) OWNER TO chronicle_worker;
REVOKE CREATE ON SCHEMA public FROM chronicle_worker;
REVOKE ALL ON FUNCTION chronicle_search_file_ids(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chronicle_search_file_ids(text) TO chronicle_app;
