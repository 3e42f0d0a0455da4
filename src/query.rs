//! Query: SQL over every artifact, for analysts.
//!
//! Table names: `extract_<table>` for `artifacts/extract/<table>.parquet` (`extract_xendit`,
//! `extract_auth_users`, ...), `stage_<name>` for `artifacts/stage/<name>.parquet`
//! (`stage_profiles`, `stage_transactions`, `stage_rejects`, ...), `rejects` (the same as
//! `stage_rejects`), `diff_<table>_<insert|update|delete>` for `artifacts/stage/diff/*.parquet`,
//! and the pipeline's CSV configuration by file stem (`settings`, `keep_emails`, ...).

use crate::artifacts::{EXTRACT_DIR, STAGE_DIR};
use crate::transform::engine;
use anyhow::{Context, Result};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// How `cleanmig query` prints a result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

/// What `cleanmig query` runs.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub artifacts: PathBuf,
    pub pipeline: PathBuf,
    /// The statement; `None` opens the interactive prompt.
    pub sql: Option<String>,
    pub format: Format,
}

pub async fn run(opts: &QueryOptions) -> Result<()> {
    let ctx = session(&opts.artifacts, &opts.pipeline).await?;
    match &opts.sql {
        Some(sql) => {
            let batches = execute(&ctx, sql).await?;
            print(&batches, opts.format)?;
        }
        None => interactive(&ctx, opts.format).await?,
    }
    Ok(())
}

/// A session with every artifact registered under its predictable name.
pub async fn session(artifacts: &Path, pipeline: &Path) -> Result<SessionContext> {
    let ctx = engine::session();
    let extract =
        engine::register_parquet_dir(&ctx, &artifacts.join(EXTRACT_DIR), "extract_").await?;
    let stage_dir = artifacts.join(STAGE_DIR);
    let stage = engine::register_parquet_dir(&ctx, &stage_dir, "stage_").await?;
    if let Some(path) = stage.get("stage_rejects") {
        ctx.register_parquet(
            "rejects",
            path.to_string_lossy().as_ref(),
            Default::default(),
        )
        .await?;
    }
    let diff = engine::register_parquet_dir(&ctx, &stage_dir.join("diff"), "diff_").await?;
    engine::register_csv_dir(&ctx, pipeline).await?;
    tracing::debug!(
        "registered {} extract, {} stage and {} diff tables",
        extract.len(),
        stage.len(),
        diff.len()
    );
    Ok(ctx)
}

/// Run one statement and collect its rows.
pub async fn execute(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    let df = ctx.sql(sql).await.context("query failed")?;
    df.collect().await.context("query failed")
}

fn print(batches: &[RecordBatch], format: Format) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(batches)?
            )?;
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in batches {
                writer.write(b)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            drop(writer);
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Read statements from stdin (each ends with `;`), run and print each; errors are printed
/// and the prompt continues.
async fn interactive(ctx: &SessionContext, format: Format) -> Result<()> {
    let stdin = std::io::stdin();
    let mut buffer = String::new();
    eprintln!("cleanmig query: end each statement with `;`, Ctrl-D to leave. Tables: SHOW TABLES;");
    prompt(&buffer);
    for line in stdin.lock().lines() {
        let line = line?;
        buffer.push_str(&line);
        buffer.push('\n');
        while let Some(end) = buffer.find(';') {
            let statement: String = buffer[..end].trim().to_string();
            buffer = buffer[end + 1..].to_string();
            if statement.is_empty() {
                continue;
            }
            match execute(ctx, &statement).await {
                Ok(batches) => print(&batches, format)?,
                Err(e) => eprintln!("error: {e:#}"),
            }
        }
        prompt(&buffer);
    }
    Ok(())
}

fn prompt(buffer: &str) {
    let p = if buffer.trim().is_empty() {
        "cleanmig> "
    } else {
        "      -> "
    };
    eprint!("{p}");
    let _ = std::io::stderr().flush();
}
