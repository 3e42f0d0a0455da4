//! Checks: `pipeline/checks/*.sql`, each a SELECT of the failing rows (zero rows = pass).
//! Header comments give the severity (`-- severity: blocking|warning`, default blocking)
//! and the description (`-- description: ...`, else the first comment line).
//!
//! A check's failing rows are never held whole: the engine counts them, and a sample of the
//! first [`SAMPLE_ROWS`] rows sorted by every column is fetched with a top-k sort.

use super::engine::{self, SqlFile};
use anyhow::{bail, Context, Result};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::prelude::SessionContext;
use serde::Serialize;
use std::path::Path;

/// How many failing rows a check shows.
pub const SAMPLE_ROWS: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub severity: String,
    pub passed: bool,
    pub failing_rows: u64,
    pub description: String,
    pub sample: Vec<serde_json::Value>,
    /// The sample as a text table (not written to checks.json).
    #[serde(skip)]
    pub sample_table: String,
}

/// `checks.json`.
#[derive(Debug, Serialize)]
pub struct CheckFile {
    pub checks: Vec<CheckResult>,
}

impl From<&Vec<CheckResult>> for CheckFile {
    fn from(c: &Vec<CheckResult>) -> Self {
        Self { checks: c.clone() }
    }
}

pub async fn run(ctx: &SessionContext, dir: &Path) -> Result<Vec<CheckResult>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for file in SqlFile::read_dir(dir)? {
        let severity = file
            .headers
            .get("severity")
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_else(|| "blocking".into());
        if severity != "blocking" && severity != "warning" {
            bail!(
                "{}: severity must be blocking or warning, not `{severity}`",
                file.path.display()
            );
        }
        let what = file.path.display().to_string();
        let (failing_rows, sample) =
            engine::with_spilling_joins(ctx, &what, || failing_rows_and_sample(ctx, &file)).await?;
        out.push(CheckResult {
            name: file.name.clone(),
            severity,
            passed: failing_rows == 0,
            failing_rows,
            description: file.description.clone(),
            sample: to_json_rows(&sample)?,
            sample_table: if sample.num_rows() > 0 {
                arrow::util::pretty::pretty_format_batches(std::slice::from_ref(&sample))?
                    .to_string()
            } else {
                String::new()
            },
        });
    }
    Ok(out)
}

/// How many rows a check returns (`SELECT count(*) FROM (<check>)`), and the first
/// [`SAMPLE_ROWS`] of them sorted by every column, left to right, ascending with NULLs first
/// (`SELECT * FROM (<check>) ORDER BY <every column> LIMIT 10`), so that the same failing rows
/// always give the same sample.
async fn failing_rows_and_sample(
    ctx: &SessionContext,
    file: &SqlFile,
) -> Result<(u64, RecordBatch)> {
    let started = std::time::Instant::now();
    let context = || format!("{} failed", file.path.display());
    let df = ctx.sql(&file.sql).await.with_context(context)?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let failing_rows = df.clone().count().await.with_context(context)? as u64;
    let sample = if failing_rows == 0 {
        RecordBatch::new_empty(schema)
    } else {
        // columns by qualifier and name, as a check may return two columns of the same name
        let keys: Vec<SortExpr> = df
            .schema()
            .iter()
            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())).sort(true, true))
            .collect();
        let batches = df
            .sort(keys)
            .and_then(|df| df.limit(0, Some(SAMPLE_ROWS)))
            .with_context(context)?
            .collect()
            .await
            .with_context(context)?;
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        concat_batches(&schema, &batches).with_context(context)?
    };
    tracing::debug!(
        "{}: {failing_rows} failing rows, {:.2} s",
        file.path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok((failing_rows, sample))
}

/// Rows as JSON objects (NULLs kept as null).
pub fn to_json_rows(batch: &RecordBatch) -> Result<Vec<serde_json::Value>> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut buf);
        writer.write(batch)?;
        writer.finish()?;
    }
    let value: serde_json::Value = serde_json::from_slice(&buf)?;
    Ok(match value {
        serde_json::Value::Array(rows) => rows,
        other => vec![other],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::engine::{session, sort_all_columns};

    #[tokio::test]
    async fn the_sample_is_the_first_failing_rows_sorted_by_every_column() {
        // Guards checks.json: counting in the engine and sorting there must give the same
        // count and sample as holding every failing row and sorting it in memory.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("many.sql"),
            "-- Many failing rows, with NULLs, ties and two columns of the same name.\n\
             -- severity: warning\n\
             SELECT a.x % 3 AS k, CASE WHEN a.x % 4 = 0 THEN NULL ELSE 'row ' || (a.x % 7) END AS label, a.x, b.x\n\
             FROM unnest(range(1, 60)) AS a(x) JOIN unnest(range(1, 60)) AS b(x) ON a.x = b.x\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("none.sql"),
            "-- Nothing fails.\nSELECT 1 AS x WHERE false\n",
        )
        .unwrap();
        let ctx = session();
        let results = run(&ctx, dir.path()).await.unwrap();
        assert_eq!(results.len(), 2);
        let many = &results[0];
        assert_eq!(
            (many.name.as_str(), many.severity.as_str()),
            ("many", "warning")
        );
        let file = SqlFile::read(&dir.path().join("many.sql")).unwrap();
        let all = sort_all_columns(&file.run(&ctx).await.unwrap()).unwrap();
        assert_eq!(many.failing_rows, 59);
        assert!(!many.passed);
        assert_eq!(
            many.sample,
            to_json_rows(&all.slice(0, SAMPLE_ROWS)).unwrap()
        );
        assert_eq!(many.sample.len(), SAMPLE_ROWS);
        assert_eq!(many.sample[0]["label"], serde_json::Value::Null);
        let none = &results[1];
        assert!(none.passed);
        assert_eq!(none.failing_rows, 0);
        assert!(none.sample.is_empty() && none.sample_table.is_empty());
    }
}
