//! `report.md`: the reconciliation (every `pipeline/report/*.sql`, rendered as a table under
//! its description), the checks with their failing rows, and the artifacts.

use super::checks::CheckResult;
use super::engine::{self, SqlFile};
use crate::artifacts::{human_count, ArtifactEntry, Manifest};
use anyhow::Result;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

pub struct Section {
    pub name: String,
    pub title: String,
    pub batch: RecordBatch,
}

/// Run every file of `dir` ([`engine::side_by_side`]); sections in file-name order.
pub async fn sections(ctx: &SessionContext, dir: &Path) -> Result<Vec<Section>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    engine::side_by_side(
        ctx,
        SqlFile::read_dir(dir)?,
        |file| file.path.display().to_string(),
        |ctx, file| async move {
            let batch = file.run_once(&ctx).await?;
            Ok(Section {
                title: if file.description.is_empty() {
                    file.name.clone()
                } else {
                    file.description.clone()
                },
                name: file.name,
                batch,
            })
        },
    )
    .await
}

/// A batch as a Markdown table (rows in the order the SQL gives them).
pub fn markdown_table(batch: &RecordBatch) -> String {
    let mut s = String::new();
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let _ = writeln!(s, "| {} |", names.join(" | "));
    let _ = writeln!(
        s,
        "|{}",
        schema
            .fields()
            .iter()
            .map(|f| if f.data_type().is_numeric() {
                "---:|"
            } else {
                "---|"
            })
            .collect::<String>()
    );
    let options = FormatOptions::default().with_null("");
    let formatters: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<_, _>>()
        .unwrap_or_default();
    for row in 0..batch.num_rows() {
        let cells: Vec<String> = formatters
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| {
                let text = f
                    .value(row)
                    .to_string()
                    .replace('|', "\\|")
                    .replace('\n', " ");
                if c.data_type().is_integer() {
                    text.parse::<u64>().map(human_count).unwrap_or(text)
                } else {
                    text
                }
            })
            .collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s
}

/// Sections longer than this are summarised on stdout (report.md has every row).
pub const STDOUT_MAX_ROWS: usize = 50;

/// The reconciliation sections; with `max_rows`, longer tables show their first rows and
/// say how many there are.
pub fn render_sections(sections: &[Section], max_rows: Option<usize>) -> String {
    let mut s = String::new();
    for sec in sections {
        let _ = writeln!(s, "### {}\n", sec.title);
        let rows = sec.batch.num_rows();
        match max_rows {
            Some(max) if rows > max => {
                let _ = writeln!(s, "{}", markdown_table(&sec.batch.slice(0, max)));
                let _ = writeln!(
                    s,
                    "({} rows in all; every row is in report.md)\n",
                    human_count(rows as u64)
                );
            }
            _ => {
                let _ = writeln!(s, "{}", markdown_table(&sec.batch));
            }
        }
    }
    s
}

pub fn render(
    extract: &Manifest,
    sections: &[Section],
    checks: &[CheckResult],
    artifacts: &BTreeMap<String, ArtifactEntry>,
) -> String {
    let mut s = String::new();
    let failed: Vec<&CheckResult> = checks
        .iter()
        .filter(|c| !c.passed && c.severity == "blocking")
        .collect();
    let warned: Vec<&CheckResult> = checks
        .iter()
        .filter(|c| !c.passed && c.severity != "blocking")
        .collect();
    let _ = writeln!(s, "# cleanmig transform report\n");
    let _ = writeln!(
        s,
        "Extract snapshot `{}`, fingerprint `{}`.\n",
        extract.extracted_at, extract.fingerprint
    );
    if failed.is_empty() {
        let _ = writeln!(
            s,
            "**Result: every blocking check passed** ({} checks, {} warnings).\n",
            checks.len(),
            warned.len()
        );
    } else {
        let _ = writeln!(
            s,
            "**Result: {} blocking check(s) FAILED: {}.** The load must not run until they are fixed or accepted at approval.\n",
            failed.len(),
            failed.iter().map(|c| format!("`{}`", c.name)).collect::<Vec<_>>().join(", ")
        );
    }

    let _ = writeln!(s, "## Reconciliation\n");
    s.push_str(&render_sections(sections, None));

    render_checks(&mut s, checks);

    let _ = writeln!(s, "## Artifacts\n");
    let _ = writeln!(s, "| artifact | file | rows |");
    let _ = writeln!(s, "|---|---|---:|");
    for (name, a) in artifacts {
        let _ = writeln!(s, "| {} | `{}` | {} |", name, a.file, human_count(a.rows));
    }
    let _ = writeln!(
        s,
        "\nQuery any of them with `cleanmig query \"SELECT ... FROM stage_profiles\"` (see README for the table names)."
    );
    s
}

/// The checks table and the failing rows of each failing check.
fn render_checks(s: &mut String, checks: &[CheckResult]) {
    let _ = writeln!(s, "## Checks\n");
    let _ = writeln!(
        s,
        "| check | severity | result | failing rows | description |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---|");
    for c in checks {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            c.name,
            c.severity,
            if c.passed { "pass" } else { "FAIL" },
            human_count(c.failing_rows),
            c.description.replace('|', "\\|")
        );
    }
    let _ = writeln!(s);
    for c in checks.iter().filter(|c| !c.passed) {
        let _ = writeln!(
            s,
            "### `{}` ({}): {} failing rows\n\n{}\n\nFirst rows:\n\n```text\n{}\n```\n",
            c.name,
            c.severity,
            human_count(c.failing_rows),
            c.description,
            c.sample_table
        );
    }
}
