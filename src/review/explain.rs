//! `cleanmig explain EMAIL` / `--key EXTERNAL_ID`: the trace of one person or one payment
//! through the pipeline, from the artifacts alone (no database).
//!
//! The trace is `pipeline/explain/*.sql`, run in file-name order over the extract, the staged
//! tables and the differences, with the question in a one-row table `subject(email,
//! external_id)`; each result is registered under its name for the files that follow (the
//! first, `person`, settles the email). This module adds the column-by-column values of the
//! rows the load updates.

use super::value_changes;
use crate::artifacts::{EXTRACT_DIR, STAGE_DIR};
use crate::transform::engine::{self, SqlFile};
use anyhow::{bail, Context, Result};
use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// How the trace is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExplainFormat {
    /// Tables for a terminal.
    #[default]
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// What `cleanmig explain` needs.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    pub artifacts: PathBuf,
    pub pipeline: PathBuf,
    /// The person's email (normalised as the pipeline does: trimmed, lower-cased).
    pub email: Option<String>,
    /// A payment's External ID: the trace of its payer.
    pub key: Option<String>,
    pub format: ExplainFormat,
}

/// One step of the trace: a `pipeline/explain/*.sql` result.
#[derive(Debug, Serialize)]
pub struct Step {
    pub name: String,
    pub title: String,
    pub rows: Vec<Map<String, Value>>,
    #[serde(skip)]
    pub table: String,
}

/// One value the load changes.
#[derive(Debug, Serialize)]
pub struct Change {
    pub table: String,
    pub id: String,
    pub column: String,
    pub old: Value,
    pub new: Value,
}

/// The whole trace.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub steps: Vec<Step>,
    pub changes: Vec<Change>,
}

impl Explanation {
    /// The rows of one step (empty when there is no such step).
    pub fn rows(&self, name: &str) -> &[Map<String, Value>] {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.rows.as_slice())
            .unwrap_or_default()
    }
}

/// Steps whose rows the load may update: (step, staged table).
const UPDATABLE: &[(&str, &str)] = &[
    ("profile", "profiles"),
    ("transactions", "transactions"),
    ("enrollments", "enrollments"),
];

/// `cleanmig explain`: print the trace.
pub async fn run(options: &ExplainOptions) -> Result<()> {
    let explanation = explain(options).await?;
    let mut out = std::io::stdout().lock();
    match options.format {
        ExplainFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &explanation)?;
            writeln!(out)?;
        }
        ExplainFormat::Text => write!(out, "{}", render_text(&explanation))?,
    }
    Ok(())
}

/// The trace of `options.email` or `options.key`.
pub async fn explain(options: &ExplainOptions) -> Result<Explanation> {
    if options.email.is_none() && options.key.is_none() {
        bail!("name an email (`cleanmig explain EMAIL`) or a payment (`--key EXTERNAL_ID`)");
    }
    let ctx = session(options).await?;
    let dir = options.pipeline.join("explain");
    let files = SqlFile::read_dir(&dir)?;
    if files.is_empty() {
        bail!("no SQL files in {}", dir.display());
    }
    let mut steps = Vec::new();
    for file in files {
        let batch = file.run(&ctx).await?;
        engine::register_batches(&ctx, &file.name, batch.schema(), vec![batch.clone()])?;
        let rows = super::json_objects(&batch)?;
        steps.push(Step {
            name: file.name.clone(),
            title: file.description.clone(),
            table: arrow::util::pretty::pretty_format_batches(std::slice::from_ref(&batch))?
                .to_string(),
            rows,
        });
    }
    let person = steps
        .iter()
        .find(|s| s.name == "person")
        .and_then(|s| s.rows.first())
        .with_context(|| format!("{} has no `person` step (NN_person.sql)", dir.display()))?;
    let email = person
        .get("email")
        .and_then(|v| v.as_str())
        .map(String::from);
    let found = steps
        .iter()
        .filter(|s| s.name != "person")
        .any(|s| !s.rows.is_empty());
    if !found {
        let what = match (&options.email, &options.key) {
            (Some(e), _) => format!("email `{e}`"),
            (None, Some(k)) => format!("External ID `{k}`"),
            (None, None) => unreachable!("checked above"),
        };
        bail!(
            "{what} is in no source row and no staged table of {}; check the spelling, or run `cleanmig query` to search",
            options.artifacts.display()
        );
    }

    let mut changes = Vec::new();
    let extract =
        crate::artifacts::Manifest::read(&options.artifacts.join(crate::artifacts::EXTRACT_DIR))?;
    let tables = super::updated_tables(extract.catalog()?);
    for (step, staged) in UPDATABLE {
        let Some((_, table, diff, current)) = tables.iter().find(|t| t.0 == *staged) else {
            continue;
        };
        let rows: Vec<&Map<String, Value>> = steps
            .iter()
            .filter(|s| s.name == *step)
            .flat_map(|s| s.rows.iter())
            .filter(|r| r.get("change").and_then(|v| v.as_str()) == Some("update"))
            .collect();
        for row in rows {
            let id = row.get("id").and_then(|v| v.as_str()).unwrap_or_default();
            let columns = row
                .get("changed_columns")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            for column in columns.split(',').filter(|c| !c.is_empty()) {
                let filter = format!("u.id = '{}'", id.replace('\'', "''"));
                for v in value_changes(&ctx, diff, current, column, &filter, 1).await? {
                    changes.push(Change {
                        table: table.clone(),
                        id: id.to_string(),
                        column: column.to_string(),
                        old: v.get("old_value").cloned().unwrap_or(Value::Null),
                        new: v.get("new_value").cloned().unwrap_or(Value::Null),
                    });
                }
            }
        }
    }
    Ok(Explanation {
        email,
        external_id: options.key.clone(),
        steps,
        changes,
    })
}

/// The extract, the staged tables (`stage_*`), the differences (`diff_*`), the settings and
/// the question (`subject`).
async fn session(options: &ExplainOptions) -> Result<SessionContext> {
    let ctx = engine::session();
    let extract_dir = options.artifacts.join(EXTRACT_DIR);
    let stage_dir = options.artifacts.join(STAGE_DIR);
    let extract = engine::register_parquet_dir(&ctx, &extract_dir, "extract_").await?;
    if extract.is_empty() {
        bail!(
            "no extract in {}; run `cleanmig extract` and `cleanmig transform` first",
            extract_dir.display()
        );
    }
    let stage = engine::register_parquet_dir(&ctx, &stage_dir, "stage_").await?;
    if stage.is_empty() {
        bail!(
            "no staged tables in {}; run `cleanmig transform` first",
            stage_dir.display()
        );
    }
    engine::register_parquet_dir(&ctx, &stage_dir.join("diff"), "diff_").await?;
    engine::register_csv_dir(&ctx, &options.pipeline).await?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("email", DataType::Utf8, true),
        Field::new("external_id", DataType::Utf8, true),
    ]));
    let subject = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![options.email.as_deref()])),
            Arc::new(StringArray::from(vec![options
                .key
                .as_deref()
                .map(str::trim)])),
        ],
    )?;
    engine::register_batches(&ctx, "subject", schema, vec![subject])?;
    Ok(ctx)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The trace as text: each step's title and table, then the values that change.
pub fn render_text(e: &Explanation) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "cleanmig explain {}{}\n\n",
        e.email.as_deref().unwrap_or("(no email)"),
        e.external_id
            .as_deref()
            .map(|k| format!(" (payment {k})"))
            .unwrap_or_default()
    ));
    for step in e.steps.iter().filter(|s| s.name != "person") {
        s.push_str(&format!("== {}\n", step.title));
        if step.rows.is_empty() {
            s.push_str("(none)\n\n");
        } else {
            s.push_str(&step.table);
            s.push_str("\n\n");
        }
    }
    s.push_str("== Values the load changes, column by column\n");
    if e.changes.is_empty() {
        s.push_str("(none)\n");
    }
    for c in &e.changes {
        s.push_str(&format!(
            "{} {} {}: {} -> {}\n",
            c.table,
            c.id,
            c.column,
            cell(&c.old),
            cell(&c.new)
        ));
    }
    s
}
