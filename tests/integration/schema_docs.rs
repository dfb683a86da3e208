//! docs/schema.md stays true: every column of every table and view of a freshly migrated
//! database is documented (and nothing that does not exist is), every value of every
//! enum type has a row, and every value a CHECK constraint allows is named.
//!
//! The document's convention: a section `### \`name\`` per table, view (`analytics.x`)
//! or enum type, whose table rows start with `` | `column` `` (or `` | `label` ``).

use std::collections::BTreeSet;

use crate::common::TestDb;

const DOC: &str = include_str!("../../docs/schema.md");

/// (section, first-cell) pairs of the document.
fn documented() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut section: Option<String> = None;
    for line in DOC.lines() {
        if let Some(rest) = line.strip_prefix("### `") {
            section = rest.split('`').next().map(str::to_string);
        } else if line.starts_with("## ") || line.starts_with("### ") {
            section = None;
        } else if let (Some(s), Some(rest)) = (&section, line.strip_prefix("| `"))
            && let Some(name) = rest.split('`').next()
        {
            out.insert((s.clone(), name.to_string()));
        }
    }
    out
}

#[tokio::test]
async fn every_column_and_status_value_is_documented_in_schema_md() {
    let db = TestDb::new().await;
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT CASE WHEN c.table_schema = 'public' THEN c.table_name
                     ELSE c.table_schema || '.' || c.table_name END, c.column_name
           FROM information_schema.columns c
          WHERE c.table_schema IN ('public', 'analytics') AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let labels: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.typname::text, e.enumlabel::text FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
           JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public'",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let actual: BTreeSet<(String, String)> = columns.into_iter().chain(labels).collect();
    let documented = documented();

    let missing: Vec<_> = actual.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "docs/schema.md lacks (table, column) or (enum, value): {missing:#?}"
    );
    let stale: Vec<_> = documented.difference(&actual).collect();
    assert!(
        stale.is_empty(),
        "docs/schema.md documents what the database lacks: {stale:#?}"
    );

    // Closed sets kept as text with CHECK (… IN (…)): each allowed value is named.
    let checks: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
           JOIN pg_namespace n ON n.oid = c.connamespace
          WHERE n.nspname = 'public' AND c.contype = 'c'",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let mut unnamed = Vec::new();
    for def in checks.iter().filter(|d| d.contains("ANY (ARRAY[")) {
        for value in def.split('\'').skip(1).step_by(2) {
            if !DOC.contains(&format!("`{value}`")) {
                unnamed.push(value.to_string());
            }
        }
    }
    assert!(
        unnamed.is_empty(),
        "CHECK values not in docs/schema.md: {unnamed:?}"
    );
}

#[test]
fn the_parser_reads_sections_and_rows() {
    let doc = documented();
    assert!(doc.contains(&("files".into(), "tenant_id".into())));
    assert!(doc.contains(&("file_status".into(), "virus_failed".into())));
    assert!(doc.contains(&("analytics.dedup_savings".into(), "saved_ratio".into())));
}
