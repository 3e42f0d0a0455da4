//! Differences between the staged tables and the extracted current ones, by primary key
//! `id`: rows to insert, rows to update (with `changed_columns`, the comma-separated names
//! of the columns whose value changes) and rows to delete. Only columns both sides have are
//! compared. `auth_users` and `auth_identities` hold new rows only (existing auth users are
//! never changed), so they get an insert list only.

use anyhow::{Context, Result};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// (staged table, extracted table, whether updates and deletes are computed).
pub const DIFFS: &[(&str, &str, bool)] = &[
    ("auth_users", "extract_auth_users", false),
    ("auth_identities", "extract_auth_identities", false),
    ("profiles", "extract_unified_profiles", true),
    ("transactions", "extract_transactions", true),
    ("enrollments", "extract_enrollments", true),
];

pub struct Diff {
    /// `<table>_insert`, `<table>_update`, `<table>_delete`.
    pub name: String,
    pub batch: RecordBatch,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn collect(ctx: &SessionContext, sql: &str, what: &str) -> Result<RecordBatch> {
    let df = ctx
        .sql(sql)
        .await
        .with_context(|| format!("diff {what} failed"))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df
        .collect()
        .await
        .with_context(|| format!("diff {what} failed"))?;
    let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
    let batch = concat_batches(&schema, &batches)?;
    super::engine::sort_all_columns(&batch)
}

fn comparable(ty: &DataType) -> String {
    match ty {
        DataType::List(_) | DataType::LargeList(_) => "list".into(),
        _ => "value".into(),
    }
}

pub async fn compute(ctx: &SessionContext) -> Result<Vec<Diff>> {
    let mut out = Vec::new();
    for (stage, current, full) in DIFFS {
        let stage_schema = ctx.table(*stage).await?.schema().as_arrow().clone();
        let current_schema = ctx.table(*current).await?.schema().as_arrow().clone();
        let insert = collect(
            ctx,
            &format!("SELECT s.* FROM {stage} AS s WHERE s.id NOT IN (SELECT id FROM {current})"),
            &format!("{stage} insert"),
        )
        .await?;
        out.push(Diff {
            name: format!("{stage}_insert"),
            batch: insert,
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
                    "CASE WHEN {a} IS DISTINCT FROM {b} THEN '{}' END",
                    f.name().replace('\'', "''")
                ));
            }
        }
        let changed = if changes.is_empty() {
            "''".to_string()
        } else {
            format!("concat_ws(',', {})", changes.join(", "))
        };
        let update = collect(
            ctx,
            &format!(
                "SELECT * FROM (SELECT {changed} AS changed_columns, s.* \
                 FROM {stage} AS s JOIN {current} AS c ON s.id = c.id) AS u \
                 WHERE changed_columns <> ''"
            ),
            &format!("{stage} update"),
        )
        .await?;
        out.push(Diff {
            name: format!("{stage}_update"),
            batch: update,
        });
        let delete = collect(
            ctx,
            &format!("SELECT c.* FROM {current} AS c WHERE c.id NOT IN (SELECT id FROM {stage})"),
            &format!("{stage} delete"),
        )
        .await?;
        out.push(Diff {
            name: format!("{stage}_delete"),
            batch: delete,
        });
    }
    Ok(out)
}
