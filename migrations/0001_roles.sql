-- Runtime roles. The owner (the DATABASE_URL user) only migrates; the API runs as
-- chronicle_app and the worker/projectors as chronicle_worker. Neither is superuser
-- nor BYPASSRLS, so row-level security applies to every query they run.
-- Roles are cluster-wide: several databases (tests, benches) may race to create them,
-- hence the exception handlers.
DO $$
BEGIN
  BEGIN
    CREATE ROLE chronicle_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
  BEGIN
    CREATE ROLE chronicle_worker NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
END
$$;

-- The connecting (owner) user switches to these roles with SET ROLE, which requires
-- membership. GRANT is idempotent, but concurrent GRANTs of the same membership can
-- still collide on the catalog, so guard it as well.
DO $$
BEGIN
  BEGIN
    EXECUTE format('GRANT chronicle_app, chronicle_worker TO %I', current_user);
  EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL;
  END;
END
$$;

GRANT USAGE ON SCHEMA public TO chronicle_app, chronicle_worker;
