//! Differences between the staged tables and the extracted current ones, by primary key
//! `id`: rows to insert, rows to update (with `changed_columns`, the comma-separated names
//! of the columns whose value changes) and rows to delete. Only columns both sides have are
//! compared. `auth_users` and `auth_identities` hold new rows only (existing auth users are
//! never changed), so they get an insert list only.

use crate::catalog::Catalog;
use crate::sql::{ident, literal};
use anyhow::Result;
use arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;

/// One difference to compute: run `sql`, sort, write `diff/<name>.parquet`.
pub struct DiffQuery {
    /// `<table>_insert`, `<table>_update`, `<table>_delete`.
    pub name: String,
    pub sql: String,
}

fn comparable(ty: &DataType) -> String {
    match ty {
        DataType::List(_) | DataType::LargeList(_) => "list".into(),
        _ => "value".into(),
    }
}

/// The difference queries, in a stable order; run one at a time so that only one result is in
/// memory.
/// Reconciled tables get inserts, updates and deletes; tables whose rows are only created get
/// inserts.
pub async fn queries(ctx: &SessionContext, catalog: &Catalog) -> Result<Vec<DiffQuery>> {
    let mut out = Vec::new();
    for table in catalog.staged() {
        let stage = table.stage_artifact();
        let current = format!("extract_{}", table.extract_artifact());
        let full = table.is_reconciled();
        let stage_schema = ctx.table(stage).await?.schema().as_arrow().clone();
        let current_schema = ctx
            .table(current.as_str())
            .await?
            .schema()
            .as_arrow()
            .clone();
        out.push(DiffQuery {
            name: format!("{stage}_insert"),
            sql: rows_without_match(stage, &current),
        });
        if !full {
            continue;
        }
        let mut changes = Vec::new();
        for f in stage_schema.fields() {
            if f.name() == "id" {
                continue;
            }
            if let Ok(cf) = current_schema.field_with_name(f.name()) {
                let col = ident(f.name());
                let (a, b) = if comparable(f.data_type()) == "list"
                    || comparable(cf.data_type()) == "list"
                {
                    (
                        format!("array_to_string(s.{col}, chr(31), chr(30))"),
                        format!("array_to_string(c.{col}, chr(31), chr(30))"),
                    )
                } else {
                    (format!("s.{col}"), format!("c.{col}"))
                };
                changes.push(format!(
                    "CASE WHEN {a} IS DISTINCT FROM {b} THEN {} END",
                    literal(f.name())
                ));
            }
        }
        let changed = if changes.is_empty() {
            "''".to_string()
        } else {
            format!("concat_ws(',', {})", changes.join(", "))
        };
        out.push(DiffQuery {
            name: format!("{stage}_update"),
            sql: format!(
                "SELECT * FROM (SELECT {changed} AS changed_columns, s.* \
                 FROM {stage} AS s JOIN {current} AS c ON s.id = c.id) AS u \
                 WHERE changed_columns <> ''"
            ),
        });
        out.push(DiffQuery {
            name: format!("{stage}_delete"),
            sql: rows_without_match(&current, stage),
        });
    }
    Ok(out)
}

/// The rows of `from` whose `id` no row of `other` has: an anti join the engine can spill (and
/// run again as a sort-merge join), where `NOT IN` would hold one side whole, and would find
/// nothing once `other` held a NULL id.
fn rows_without_match(from: &str, other: &str) -> String {
    format!("SELECT r.* FROM {from} AS r WHERE NOT EXISTS (SELECT 1 FROM {other} AS o WHERE o.id = r.id)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::engine::{session, shown};

    #[tokio::test]
    async fn a_row_without_an_id_on_the_other_side_hides_no_insert_or_delete() {
        let ctx = session();
        for sql in [
            "CREATE TABLE staged AS SELECT * FROM (VALUES ('a', 1), ('b', 2)) AS v(id, x)",
            "CREATE TABLE current AS SELECT * FROM (VALUES ('b', 2), ('c', 3), (CAST(NULL AS VARCHAR), 4)) AS v(id, x)",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        let inserts = format!("{} ORDER BY id", rows_without_match("staged", "current"));
        assert_eq!(
            shown(&ctx, &inserts).await,
            "+----+---+\n| id | x |\n+----+---+\n| a  | 1 |\n+----+---+"
        );
        let deletes = format!(
            "{} ORDER BY id NULLS FIRST",
            rows_without_match("current", "staged")
        );
        assert_eq!(
            shown(&ctx, &deletes).await,
            "+----+---+\n| id | x |\n+----+---+\n|    | 4 |\n| c  | 3 |\n+----+---+"
        );
    }
}
