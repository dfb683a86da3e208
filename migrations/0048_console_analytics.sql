-- The web console's analytics page (src/console/analytics) reads the `analytics` views
-- as the API role. The views are `security_invoker`: row-level security on the tables
-- underneath still shows the API role one tenant (its `app.tenant_id`), and the
-- console's queries filter by that tenant as well.
GRANT USAGE ON SCHEMA analytics TO chronicle_app;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO chronicle_app;
