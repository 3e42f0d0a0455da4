//! Checks: `pipeline/checks/*.sql`, each a SELECT of the failing rows (zero rows = pass).
//! Header comments give the severity (`-- severity: blocking|warning`, default blocking)
//! and the description (`-- description: ...`, else the first comment line).

use super::engine::SqlFile;
use anyhow::{bail, Result};
use arrow::record_batch::RecordBatch;
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
        let batch = file.run(ctx).await?;
        let batch = super::engine::sort_all_columns(&batch)?;
        let sample = batch.slice(0, batch.num_rows().min(SAMPLE_ROWS));
        out.push(CheckResult {
            name: file.name.clone(),
            severity,
            passed: batch.num_rows() == 0,
            failing_rows: batch.num_rows() as u64,
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
