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

/// Run every check of `dir` ([`engine::side_by_side`]); results in file-name order.
pub async fn run(ctx: &SessionContext, dir: &Path) -> Result<Vec<CheckResult>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
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
        files.push((file, severity));
    }
    engine::side_by_side(
        ctx,
        files,
        |(file, _)| file.path.display().to_string(),
        |ctx, (file, severity)| async move {
            let (failing_rows, sample) = failing_rows_and_sample(&ctx, &file).await?;
            Ok(CheckResult {
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
            })
        },
    )
    .await
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

    #[tokio::test]
    async fn a_missing_payment_fails_its_check_although_a_staged_transaction_has_no_provider_id() {
        // Guards the blocking checks against `x NOT IN (SELECT y ...)`, which is NULL for
        // every x once one y is NULL: a check written so finds nothing, and passes, as soon as
        // one staged row has no value there. Here a kept Canva payment has no transaction, and
        // another staged transaction has no payment_provider_id.
        let dir = tempfile::tempdir().unwrap();
        let name = "canva_payments_kept.sql";
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("pipeline/checks")
                .join(name),
            dir.path().join(name),
        )
        .unwrap();
        let ctx = session();
        for sql in [
            "CREATE TABLE payments AS SELECT * FROM (VALUES \
               (1, 'inv-1', 'ana@example.com', 'kept', 'canva'), \
               (2, 'inv-2', 'ben@example.com', 'kept', 'canva')) \
             AS v(_source_row, external_id, email, outcome, product)",
            "CREATE TABLE transactions AS SELECT * FROM (VALUES ('inv-2'), (CAST(NULL AS VARCHAR))) \
             AS v(payment_provider_id)",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        let results = run(&ctx, dir.path()).await.unwrap();
        assert_eq!(results[0].failing_rows, 1, "{:?}", results[0].sample);
        assert_eq!(results[0].sample[0]["external_id"], "inv-1");
    }

    #[test]
    fn no_pipeline_file_filters_with_not_in_a_subquery() {
        // `NOT EXISTS` instead: `x NOT IN (SELECT y ...)` finds nothing once one y is NULL
        // (the test above), and the engine runs it as a hash join on one side whole, which
        // cannot spill and is not run again as a sort-merge join.
        fn sql_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sql_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "sql") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        sql_files(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline"),
            &mut files,
        );
        assert!(files.len() > 40, "{files:?}");
        let offending: Vec<String> = files
            .iter()
            .filter(|f| {
                let sql = std::fs::read_to_string(f).unwrap().to_lowercase();
                let code: String = sql
                    .lines()
                    .map(|l| l.split("--").next().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(" ");
                let words: Vec<&str> = code
                    .split(|c: char| c.is_whitespace() || c == '(')
                    .filter(|w| !w.is_empty())
                    .collect();
                words.windows(3).any(|w| w == ["not", "in", "select"])
            })
            .map(|f| f.display().to_string())
            .collect();
        assert!(offending.is_empty(), "NOT IN (SELECT ...) in {offending:?}");
    }
}
