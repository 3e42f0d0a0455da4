//! Review: `stage/review.html`, one self-contained page for the people who approve a launch
//! (verdict, where every source row went, checks, what changes in the database, plots,
//! rejects), and [`explain`], the trace of one person or payment through the pipeline.
//!
//! The summaries are `pipeline/review/*.sql`, run by DataFusion over the same tables the
//! report reads; this module only runs them, draws the plots (plotters, SVG) and fills the
//! template (minijinja). The page makes no network request: every style, script and picture
//! is inline, and its Content-Security-Policy forbids loading anything. Same artifacts, same
//! bytes.

pub mod charts;
pub mod explain;

use crate::approve::{Approval, Checks, CHECKS};
use crate::artifacts::{Manifest, EXTRACT_DIR, STAGE_DIR};
use crate::transform::engine::{self, side_by_side, SqlFile};
use anyhow::{Context, Result};
use arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the page inside the stage directory.
pub const PAGE: &str = "review.html";

const TEMPLATE: &str = include_str!("review.html.j2");
const STYLE: &str = include_str!("review.css");
const SCRIPT: &str = include_str!("review.js");

/// Sample rows shown per updated column (old -> new).
pub const UPDATE_SAMPLE_ROWS: usize = 5;
/// Columns per table that get old -> new samples (the most changed first).
pub const UPDATE_SAMPLE_COLUMNS: usize = 8;

/// What `cleanmig review` needs.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// The artifacts directory (holds `extract/` and `stage/`).
    pub artifacts: PathBuf,
    /// The pipeline directory (holds `transform/`, `review/` and the settings).
    pub pipeline: PathBuf,
}

/// `cleanmig review`: render the page from existing artifacts; prints its path.
///
/// The summaries read the pipeline's intermediate tables (payments, contacts, customers), which
/// transform does not keep: they are computed again in memory from the extract, and the staged
/// tables and differences are read from the stage directory.
pub async fn run(options: &ReviewOptions) -> Result<PathBuf> {
    let scratch = tempfile::Builder::new()
        .prefix(".review.tmp-")
        .tempdir_in(&options.artifacts)
        .with_context(|| {
            format!(
                "cannot create a scratch directory in {}",
                options.artifacts.display()
            )
        })?;
    let ctx = pipeline_session(&options.artifacts, &options.pipeline, scratch.path()).await?;
    let path = write_page(&ctx, &options.artifacts, &options.pipeline).await?;
    println!("{}", path.display());
    Ok(path)
}

/// A session with the tables the transform's last steps see: the extract, the settings, the
/// intermediate results of `pipeline/transform/*.sql` and the staged tables and differences
/// (read from the stage directory rather than computed again).
async fn pipeline_session(
    artifacts: &Path,
    pipeline: &Path,
    scratch: &Path,
) -> Result<SessionContext> {
    let extract_dir = artifacts.join(EXTRACT_DIR);
    let stage_dir = artifacts.join(STAGE_DIR);
    let extract = Manifest::read(&extract_dir).with_context(|| {
        format!(
            "no extract found in {}; run `cleanmig extract` first",
            extract_dir.display()
        )
    })?;
    Manifest::read(&stage_dir).with_context(|| {
        format!(
            "no staged artifacts in {}; run `cleanmig transform` first",
            stage_dir.display()
        )
    })?;
    let memory_limit = crate::transform::DEFAULT_MEMORY_LIMIT_MIB * 1024 * 1024;
    let ctx = engine::bounded_session(memory_limit, scratch)?;
    let registered = engine::register_parquet_dir(&ctx, &extract_dir, "extract_").await?;
    engine::register_csv_dir(&ctx, pipeline).await?;
    crate::transform::register_pipeline_inputs(&ctx, &extract, &registered, pipeline).await?;
    let staged = engine::register_parquet_dir(&ctx, &stage_dir, "").await?;
    for file in SqlFile::read_dir(&pipeline.join("transform"))? {
        if staged.contains_key(&file.name) {
            continue;
        }
        let spill = scratch.join(format!("{}.parquet", file.name));
        file.run_into(&ctx, &file.name, &spill, memory_limit / 16)
            .await?;
    }
    engine::register_parquet_dir(&ctx, &stage_dir.join("diff"), "diff_").await?;
    Ok(ctx)
}

/// One summary: a `pipeline/review/*.sql` result as JSON rows.
#[derive(Debug, Serialize)]
struct Summary {
    title: String,
    columns: Vec<String>,
    rows: Vec<Map<String, Value>>,
}

/// Old -> new values of one column on sample rows.
#[derive(Debug, Serialize)]
struct ColumnChange {
    column: String,
    rows_changed: u64,
    percent: f64,
    samples: Vec<BTreeMap<String, Value>>,
}

/// Render `stage/review.html` in a session where the pipeline's tables are registered (the
/// transform's own session, or [`pipeline_session`]); returns the page's path.
pub async fn write_page(
    ctx: &SessionContext,
    artifacts: &Path,
    pipeline: &Path,
) -> Result<PathBuf> {
    let stage_dir = artifacts.join(STAGE_DIR);
    let extract = Manifest::read(&artifacts.join(EXTRACT_DIR))?;
    let checks: Checks = crate::artifacts::read_json(&stage_dir.join(CHECKS))?;
    // An approval of these same artifacts shows its accepted checks; an older one is ignored.
    let approval = if artifacts.join(crate::artifacts::APPROVAL).exists() {
        Some(Approval::read(artifacts)?)
    } else {
        None
    }
    .filter(|a| a.fingerprint == extract.fingerprint && a.extracted_at == extract.extracted_at);

    let dir = pipeline.join("review");
    let summaries = run_summaries(ctx, &dir).await?;
    let get = |name: &str| -> Result<&Summary> {
        summaries.get(name).with_context(|| {
            format!(
                "{} has no file that produces `{name}` (e.g. NN_{name}.sql)",
                dir.display()
            )
        })
    };

    let headline = get("headline")?
        .rows
        .first()
        .cloned()
        .context("the headline summary returned no row")?;
    let verdict = verdict(&checks, approval.as_ref());

    let column_changes =
        column_changes(ctx, extract.catalog()?, &get("column_changes")?.rows).await?;
    let timezone = default_timezone(ctx).await?;
    let charts = charts::all(&summaries_rows(&summaries), &timezone)?;

    let page = render(minijinja::context! {
        style => STYLE,
        script => SCRIPT,
        extracted_at => extract.extracted_at,
        fingerprint => extract.fingerprint,
        timezone => timezone,
        verdict => verdict,
        headline => headline,
        checks => checks.checks,
        s => summaries,
        column_changes => column_changes,
        charts => charts,
    })?;
    let path = stage_dir.join(PAGE);
    crate::artifacts::write_atomic(&path, page.as_bytes())?;
    tracing::info!(
        "review page: {}, {}",
        path.display(),
        crate::artifacts::human_bytes(page.len() as u64)
    );
    Ok(path)
}

/// Run every `pipeline/review/*.sql`, each a summary named by its file stem.
async fn run_summaries(ctx: &SessionContext, dir: &Path) -> Result<BTreeMap<String, Summary>> {
    let summaries = side_by_side(
        ctx,
        SqlFile::read_dir(dir)?,
        |file| file.path.display().to_string(),
        |ctx, file| async move {
            let batch = file.run_once(&ctx).await?;
            let columns = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let rows = json_objects(&batch)?;
            let summary = Summary {
                title: file.description.clone(),
                columns,
                rows,
            };
            Ok((file.name, summary))
        },
    )
    .await?;
    Ok(summaries.into_iter().collect())
}

/// A result's rows as JSON objects, one per row (NULLs kept as null).
fn json_objects(batch: &arrow::record_batch::RecordBatch) -> Result<Vec<Map<String, Value>>> {
    Ok(crate::transform::checks::to_json_rows(batch)?
        .into_iter()
        .filter_map(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect())
}

/// Whether the load may go ahead: failing blocking checks, and those an approval of these
/// same artifacts accepted with its reasons.
fn verdict(checks: &Checks, approval: Option<&Approval>) -> Value {
    let failed: Vec<&crate::approve::Check> = checks
        .checks
        .iter()
        .filter(|c| c.is_blocking() && !c.passed)
        .collect();
    let accepted: Vec<Value> = approval
        .map(|a| {
            a.accepted
                .iter()
                .map(
                    |c| json!({"name": c.name, "failing_rows": c.failing_rows, "reason": c.reason}),
                )
                .collect()
        })
        .unwrap_or_default();
    let unaccepted: Vec<&str> = failed
        .iter()
        .filter(|c| !accepted.iter().any(|a| a["name"] == c.name.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    json!({
        "go": unaccepted.is_empty(),
        "failed": failed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "unaccepted": unaccepted,
        "accepted": accepted,
        "checks": checks.checks.len(),
        "passed": checks.checks.iter().filter(|c| c.passed).count(),
        "warnings": checks.checks.iter().filter(|c| !c.is_blocking() && !c.passed).count(),
        "approved_by": approval.map(|a| a.approved_by.clone()),
    })
}

/// The page from its template.
fn render(context: minijinja::Value) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_filter("num", filter_count);
    env.add_filter("php", filter_php);
    env.add_filter("cell", filter_cell);
    env.add_template("review.html", TEMPLATE)
        .context("src/review/review.html.j2 does not parse")?;
    env.get_template("review.html")
        .and_then(|t| t.render(context))
        .context("cannot render src/review/review.html.j2")
}

fn summaries_rows(
    summaries: &BTreeMap<String, Summary>,
) -> BTreeMap<String, Vec<Map<String, Value>>> {
    summaries
        .iter()
        .map(|(k, v)| (k.clone(), v.rows.clone()))
        .collect()
}

async fn default_timezone(ctx: &SessionContext) -> Result<String> {
    let batches = ctx
        .sql("SELECT default_timezone FROM config")
        .await?
        .collect()
        .await?;
    let rows = batches
        .iter()
        .map(crate::transform::checks::to_json_rows)
        .collect::<Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .flatten()
        .next()
        .and_then(|r| r["default_timezone"].as_str().map(String::from))
        .unwrap_or_else(|| "Asia/Manila".into()))
}

/// The reconciled tables of the catalogue, with the names transform gives their artifacts:
/// (staged table, destination table, update difference, current table).
pub fn updated_tables(catalog: &crate::catalog::Catalog) -> Vec<(String, String, String, String)> {
    catalog
        .reconciled()
        .map(|t| {
            let stage = t.stage_artifact().to_string();
            (
                stage.clone(),
                t.extract_artifact(),
                format!("diff_{stage}_update"),
                format!("extract_{}", t.extract_artifact()),
            )
        })
        .collect()
}

/// A column as text for display (lists joined with `, `).
fn as_text(alias: &str, column: &str, ty: &DataType) -> String {
    let col = format!("{alias}.{}", crate::sql::ident(column));
    match ty {
        DataType::List(_) | DataType::LargeList(_) => format!("array_to_string({col}, ', ')"),
        _ => format!("CAST({col} AS VARCHAR)"),
    }
}

/// Old -> new values of `column` on the rows of `diff` (an update difference) matching
/// `filter` (SQL on alias `u`), at most `limit` rows in id order.
pub async fn value_changes(
    ctx: &SessionContext,
    diff: &str,
    current: &str,
    column: &str,
    filter: &str,
    limit: usize,
) -> Result<Vec<BTreeMap<String, Value>>> {
    let staged_schema = ctx.table(diff).await?.schema().as_arrow().clone();
    let current_schema = ctx.table(current).await?.schema().as_arrow().clone();
    let (Ok(sf), Ok(cf)) = (
        staged_schema.field_with_name(column),
        current_schema.field_with_name(column),
    ) else {
        return Ok(Vec::new());
    };
    // The rows are picked from the differences alone, then joined: every row of an update
    // difference has its current row, and joining all of them first to keep five costs a
    // hash join of both tables per column.
    let sql = format!(
        "WITH picked AS ( \
           SELECT * FROM {diff} AS u \
           WHERE array_has(string_to_array(u.changed_columns, ','), {col}) AND ({filter}) \
           ORDER BY CAST(u.id AS VARCHAR) LIMIT {limit}) \
         SELECT CAST(u.id AS VARCHAR) AS id, {old} AS old_value, {new} AS new_value \
         FROM picked AS u JOIN {current} AS c ON c.id = u.id \
         ORDER BY 1",
        old = as_text("c", column, cf.data_type()),
        new = as_text("u", column, sf.data_type()),
        col = crate::sql::literal(column),
    );
    let batches = ctx
        .sql(&sql)
        .await
        .with_context(|| format!("old -> new values of {diff}.{column}"))?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        out.extend(
            json_objects(b)?
                .into_iter()
                .map(|m| m.into_iter().collect()),
        );
    }
    Ok(out)
}

/// Per updated table: a bar per column (rows that change in it) and old -> new samples.
async fn column_changes(
    ctx: &SessionContext,
    catalog: &crate::catalog::Catalog,
    rows: &[Map<String, Value>],
) -> Result<BTreeMap<String, Vec<ColumnChange>>> {
    let tables = updated_tables(catalog);
    let counts_of = |table: &str| -> Vec<(String, u64)> {
        rows.iter()
            .filter(|r| r["destination_table"] == table)
            .map(|r| {
                (
                    r["column_name"].as_str().unwrap_or_default().to_string(),
                    r["rows_changed"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    };
    // The first columns of each table get samples of their old and new values.
    let sampled: Vec<(String, String, String)> = tables
        .iter()
        .flat_map(|(_, table, diff, current)| {
            counts_of(table)
                .into_iter()
                .take(UPDATE_SAMPLE_COLUMNS)
                .map(|(column, _)| (diff.clone(), current.clone(), column))
        })
        .collect();
    let mut samples = side_by_side(
        ctx,
        sampled,
        |(diff, _, column)| format!("old -> new values of {diff}.{column}"),
        |ctx, (diff, current, column)| async move {
            value_changes(&ctx, &diff, &current, &column, "true", UPDATE_SAMPLE_ROWS).await
        },
    )
    .await?
    .into_iter();
    let mut out: BTreeMap<String, Vec<ColumnChange>> = BTreeMap::new();
    for (_, table, _, _) in tables {
        let counts = counts_of(&table);
        let max = counts.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
        let changes = counts
            .into_iter()
            .enumerate()
            .map(|(i, (column, n))| ColumnChange {
                column,
                rows_changed: n,
                percent: (n as f64 * 100.0 / max as f64).round(),
                samples: if i < UPDATE_SAMPLE_COLUMNS {
                    samples.next().unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        out.insert(table, changes);
    }
    Ok(out)
}

/// A number as text with thousands separators (`12,345`; `12,345.5` keeps its fraction).
fn group_thousands(text: &str) -> String {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", text),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn number_of(value: &minijinja::Value) -> Option<f64> {
    if let Some(s) = value.as_str() {
        return s.trim().parse().ok();
    }
    f64::try_from(value.clone()).ok()
}

/// `{{ n | count }}`: an integer with thousands separators.
fn filter_count(value: minijinja::Value) -> String {
    match number_of(&value) {
        Some(n) => group_thousands(&format!("{}", n.round() as i64)),
        None => value.to_string(),
    }
}

/// `{{ amount | php }}`: pesos with two decimals and thousands separators.
fn filter_php(value: minijinja::Value) -> String {
    match number_of(&value) {
        Some(n) => group_thousands(&format!("{n:.2}")),
        None => value.to_string(),
    }
}

/// `{{ value | cell }}`: a table cell (empty for null, objects as JSON).
fn filter_cell(value: minijinja::Value) -> String {
    if value.is_none() || value.is_undefined() {
        String::new()
    } else if let Some(s) = value.as_str() {
        s.to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(group_thousands("1234567"), "1,234,567");
        assert_eq!(group_thousands("-1234.50"), "-1,234.50");
        assert_eq!(group_thousands("999"), "999");
        assert_eq!(filter_php(minijinja::Value::from("2000.5")), "2,000.50");
        assert_eq!(filter_count(minijinja::Value::from(12345)), "12,345");
    }
}
