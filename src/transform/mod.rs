//! Transform: run the SQL in `pipeline/` over the extract with DataFusion; no database
//! connection.
//!
//! Reads `artifacts/extract/*.parquet` and its manifest, runs `pipeline/transform/*.sql` in
//! file-name order (each result registered under the file's name for the later files), writes
//! the outputs named like destination tables shaped exactly like them, diffs them against the
//! extracted tables, runs `pipeline/checks/*.sql`, renders `pipeline/report/*.sql` into
//! `report.md`, and lists every file in `stage/manifest.json`. Same inputs, same bytes: every
//! output is sorted and "now" is the extract's snapshot time.

pub mod checks;
pub mod diff;
pub mod engine;
pub mod report;

use crate::artifacts::{ArtifactEntry, Manifest, EXTRACT_DIR, MANIFEST, STAGE_DIR};
use crate::cli::{GlobalArgs, TransformArgs};
use crate::error::Refusal;
use anyhow::{bail, Context, Result};
use arrow::array::{RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;
use engine::SqlFile;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Pipeline outputs written as destination tables: (output name, extracted table it mirrors).
pub const TABLE_OUTPUTS: &[(&str, &str)] = &[
    ("auth_users", "auth_users"),
    ("auth_identities", "auth_identities"),
    ("profiles", "unified_profiles"),
    ("transactions", "transactions"),
    ("enrollments", "enrollments"),
];

/// Pipeline outputs with no destination table.
pub const OTHER_OUTPUTS: &[&str] = &["rejects"];

/// Source tables whose rows are accounted for in rejects (raw values as JSON).
pub const SOURCE_TABLES: &[&str] = &["xendit", "systemeio"];

/// What a transform run produced.
#[derive(Debug)]
pub struct Outcome {
    pub stage_dir: PathBuf,
    pub checks: Vec<checks::CheckResult>,
    pub manifest: Manifest,
}

pub async fn run(global: &GlobalArgs, args: &TransformArgs) -> Result<Outcome> {
    let outcome = transform_with(
        &global.artifacts,
        &global.pipeline,
        args.memory_limit_mib * 1024 * 1024,
    )
    .await?;
    let failed: Vec<&checks::CheckResult> = outcome
        .checks
        .iter()
        .filter(|c| !c.passed && c.severity == "blocking")
        .collect();
    if !failed.is_empty() {
        for c in &failed {
            eprintln!(
                "check {} failed ({} rows): {}\n{}",
                c.name, c.failing_rows, c.description, c.sample_table
            );
        }
        return Err(Refusal::ValidationFailed {
            checks: failed
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            report: outcome.stage_dir.join("report.md").display().to_string(),
        }
        .into());
    }
    Ok(outcome)
}

/// Memory pool of the query engine when none is given (`--memory-limit-mib`).
pub const DEFAULT_MEMORY_LIMIT_MIB: usize = 1024;

/// Run the whole stage; checks that fail are reported in the outcome, not as an error.
pub async fn transform(artifacts: &Path, pipeline: &Path) -> Result<Outcome> {
    transform_with(artifacts, pipeline, DEFAULT_MEMORY_LIMIT_MIB * 1024 * 1024).await
}

/// [`transform`] with the query engine's memory pool set to `memory_limit` bytes.
///
/// Memory stays bounded whatever the size of the extract: a pipeline file's result larger than
/// a sixteenth of the pool streams into a Parquet file in a private scratch directory (removed
/// afterwards) and later files read it from there; outputs are sorted by the engine and written
/// as they stream; sorts and aggregations spill to the scratch directory when the pool is full.
pub async fn transform_with(
    artifacts: &Path,
    pipeline: &Path,
    memory_limit: usize,
) -> Result<Outcome> {
    let extract_dir = artifacts.join(EXTRACT_DIR);
    let stage_dir = artifacts.join(STAGE_DIR);
    let extract = Manifest::read(&extract_dir).with_context(|| {
        format!(
            "no extract found in {}; run `cleanmig extract` first",
            extract_dir.display()
        )
    })?;

    crate::artifacts::create_private_dir(artifacts)?;
    let scratch = tempfile::Builder::new()
        .prefix(".transform.tmp-")
        .tempdir_in(artifacts)
        .with_context(|| {
            format!(
                "cannot create a scratch directory in {}",
                artifacts.display()
            )
        })?;
    let ctx = engine::bounded_session(memory_limit, scratch.path())?;
    let registered = engine::register_parquet_dir(&ctx, &extract_dir, "extract_").await?;
    engine::register_csv_dir(&ctx, pipeline).await?;
    register_pipeline_inputs(&ctx, &extract, &registered).await?;

    // Run the rules.
    let files = SqlFile::read_dir(&pipeline.join("transform"))?;
    if files.is_empty() {
        bail!("no SQL files in {}", pipeline.join("transform").display());
    }
    let mut results: BTreeMap<String, SqlFile> = BTreeMap::new();
    for file in files {
        let spill = scratch.path().join(format!("{}.parquet", file.name));
        file.run_into(&ctx, &file.name, &spill, memory_limit / 16)
            .await
            .map_err(|e| explain_memory(e, memory_limit))?;
        results.insert(file.name.clone(), file);
    }

    // Shape and write the outputs.
    clear_stage(&stage_dir)?;
    let mut artifacts_out: BTreeMap<String, ArtifactEntry> = BTreeMap::new();
    for (name, table) in TABLE_OUTPUTS {
        let file = results.get(*name).with_context(|| {
            format!("pipeline/transform has no file that produces `{name}` (e.g. NN_{name}.sql)")
        })?;
        let path = registered
            .get(&format!("extract_{table}"))
            .with_context(|| format!("the extract has no `{table}` table ({table}.parquet)"))?;
        let mut target = engine::parquet_schema(path)?;
        if *name == "transactions" {
            target = full_transactions_schema(&target);
        }
        let not_written: Vec<String> = file
            .headers
            .get("generated")
            .map(|g| g.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        let shape = |b: &RecordBatch| engine::conform(b, &target, &not_written, &file.path);
        let entry = write_sorted(
            &ctx,
            &stage_dir,
            &format!("{name}.parquet"),
            name,
            &shape,
            memory_limit,
        )
        .await?;
        artifacts_out.insert(name.to_string(), entry);
    }
    for name in OTHER_OUTPUTS {
        let file = results
            .get(*name)
            .with_context(|| format!("pipeline/transform has no file that produces `{name}`"))?;
        let shape = |b: &RecordBatch| {
            RecordBatch::try_new(engine::plain_schema(&b.schema()), b.columns().to_vec())
                .with_context(|| format!("{}", file.path.display()))
        };
        let entry = write_sorted(
            &ctx,
            &stage_dir,
            &format!("{name}.parquet"),
            name,
            &shape,
            memory_limit,
        )
        .await?;
        artifacts_out.insert(name.to_string(), entry);
    }

    // Differences against what the database holds now.
    for d in diff::queries(&ctx).await? {
        let shape = |b: &RecordBatch| Ok(b.clone());
        let entry = write_sorted(
            &ctx,
            &stage_dir,
            &format!("diff/{}.parquet", d.name),
            &format!("({})", d.sql),
            &shape,
            memory_limit,
        )
        .await?;
        artifacts_out.insert(format!("diff/{}", d.name), entry);
    }

    // Checks and report.
    let check_results = checks::run(&ctx, &pipeline.join("checks")).await?;
    let checks_path = stage_dir.join("checks.json");
    crate::artifacts::write_json(&checks_path, &checks::CheckFile::from(&check_results))?;
    artifacts_out.insert(
        "checks".into(),
        file_entry(&stage_dir, &checks_path, check_results.len() as u64)?,
    );

    let sections = report::sections(&ctx, &pipeline.join("report")).await?;
    let markdown = report::render(&extract, &sections, &check_results, &artifacts_out);
    let report_path = stage_dir.join("report.md");
    crate::artifacts::write_atomic(&report_path, markdown.as_bytes())?;
    artifacts_out.insert("report".into(), file_entry(&stage_dir, &report_path, 0)?);
    // The review page is not in the manifest: `cleanmig review` may render it again (with the
    // approval's accepted checks). The approval covers it all the same.
    let review_path = crate::review::write_page(&ctx, artifacts, pipeline).await?;

    let manifest = Manifest {
        stage: "transform".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        extracted_at: extract.extracted_at.clone(),
        source: None,
        fingerprint: extract.fingerprint.clone(),
        tables: BTreeMap::new(),
        artifacts: artifacts_out,
    };
    manifest.write(&stage_dir)?;

    for (name, entry) in &manifest.artifacts {
        tracing::info!(
            "transform {name}: {} rows, {}",
            crate::artifacts::human_count(entry.rows),
            crate::artifacts::human_bytes(entry.bytes)
        );
    }
    let passed = check_results.iter().filter(|c| c.passed).count();
    tracing::info!(
        "transform checks: {passed} of {} passed; report {}; review page {}",
        check_results.len(),
        report_path.display(),
        review_path.display()
    );
    println!(
        "{}",
        report::render_sections(&sections, Some(report::STDOUT_MAX_ROWS))
    );

    Ok(Outcome {
        stage_dir,
        checks: check_results,
        manifest,
    })
}

/// A query stopped because the memory pool was full: say which setting to raise.
fn explain_memory(err: anyhow::Error, memory_limit: usize) -> anyhow::Error {
    let exhausted = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<datafusion::error::DataFusionError>(),
            Some(datafusion::error::DataFusionError::ResourcesExhausted(_))
        ) || e.to_string().contains("Resources exhausted")
    });
    if exhausted {
        err.context(format!(
            "the query engine needed more than its {} MiB memory pool; run again with a larger --memory-limit-mib",
            memory_limit / (1024 * 1024)
        ))
    } else {
        err
    }
}

/// Register what the pipeline's SQL reads besides the extract and the settings: `extraction`
/// (the pipeline's "now": the extract's snapshot time) and `raw_<source>` for every source.
pub async fn register_pipeline_inputs(
    ctx: &SessionContext,
    extract: &Manifest,
    registered: &BTreeMap<String, PathBuf>,
) -> Result<()> {
    let now = chrono::DateTime::parse_from_rfc3339(&extract.extracted_at)
        .with_context(|| format!("extracted_at `{}` is not RFC 3339", extract.extracted_at))?
        .with_timezone(&chrono::Utc);
    register_extraction(ctx, now)?;
    for source in SOURCE_TABLES {
        register_raw_json(ctx, source, registered).await?;
    }
    Ok(())
}

/// `extraction`: one row, `extracted_at` = the extract's snapshot time (UTC, as a timestamp
/// without zone like every parsed time in the pipeline). The pipeline's "now".
fn register_extraction(ctx: &SessionContext, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
    let nanos = now
        .timestamp_nanos_opt()
        .context("extracted_at is out of range")?;
    let schema = Arc::new(Schema::new(vec![Field::new(
        "extracted_at",
        DataType::Timestamp(TimeUnit::Nanosecond, None),
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(TimestampNanosecondArray::from(vec![nanos]))],
    )?;
    engine::register_batches(ctx, "extraction", schema, vec![batch])
}

/// `raw_<source>`: `_source_row` and every other column of the source row as JSON text.
async fn register_raw_json(
    ctx: &SessionContext,
    source: &str,
    registered: &BTreeMap<String, PathBuf>,
) -> Result<()> {
    let table = format!("extract_{source}");
    let path = registered
        .get(&table)
        .with_context(|| format!("the extract has no `{source}` table ({source}.parquet)"))?;
    let schema = engine::parquet_schema(path)?;
    let pairs: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != "_source_row")
        .map(|f| {
            let ident = format!("\"{}\"", f.name().replace('"', "\"\""));
            format!("'{}', {ident}", f.name().replace('\'', "''"))
        })
        .collect();
    let sql = format!(
        "SELECT _source_row, json_object({}) AS raw FROM {table}",
        pairs.join(", ")
    );
    let df = ctx.sql(&sql).await?;
    ctx.register_table(format!("raw_{source}").as_str(), df.into_view())?;
    Ok(())
}

/// The transactions table in its full shape: the extracted columns plus the six API-sync
/// columns the legacy shape lacks.
pub fn full_transactions_schema(extracted: &SchemaRef) -> SchemaRef {
    let extra: [(&str, DataType, &str); 6] = [
        ("api_source", DataType::Utf8, "text"),
        (
            "last_api_sync_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "timestamp with time zone",
        ),
        ("api_sync_version", DataType::Int32, "integer"),
        (
            "processed_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "timestamp with time zone",
        ),
        ("fiscal_year", DataType::Int32, "integer"),
        ("fiscal_quarter", DataType::Int32, "integer"),
    ];
    let mut fields: Vec<Field> = extracted
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for (name, ty, pg) in extra {
        if extracted.field_with_name(name).is_err() {
            let meta = HashMap::from([(crate::pg_arrow::PG_TYPE_KEY.to_string(), pg.to_string())]);
            fields.push(Field::new(name, ty, true).with_metadata(meta));
        }
    }
    Arc::new(Schema::new_with_metadata(
        fields,
        extracted.metadata().clone(),
    ))
}

/// Remove what an earlier run left, so that the stage directory holds this run only.
fn clear_stage(stage_dir: &Path) -> Result<()> {
    if stage_dir.exists() {
        std::fs::remove_dir_all(stage_dir)
            .with_context(|| format!("cannot clear {}", stage_dir.display()))?;
    }
    crate::artifacts::create_private_dir(&stage_dir.join("diff"))
}

/// Write `stage/<file>` from `relation` (a table name or a parenthesised query), sorted by every
/// column and shaped by `shape`, and register it under its name (`diff/x` as `diff_x`) for the
/// checks and the report.
async fn write_sorted(
    ctx: &SessionContext,
    stage_dir: &Path,
    file: &str,
    relation: &str,
    shape: &dyn Fn(&RecordBatch) -> Result<RecordBatch>,
    memory_limit: usize,
) -> Result<ArtifactEntry> {
    let path = stage_dir.join(file);
    let query = format!("SELECT * FROM {relation} AS r");
    let (rows, schema) = engine::write_sorted(ctx, &query, &path, shape, file)
        .await
        .map_err(|e| explain_memory(e, memory_limit))?;
    let name = file.trim_end_matches(".parquet").replace('/', "_");
    engine::register_parquet_file(ctx, &name, &path).await?;
    ArtifactEntry::describe(stage_dir, &path, rows, &schema)
}

fn file_entry(stage_dir: &Path, path: &Path, rows: u64) -> Result<ArtifactEntry> {
    let empty: SchemaRef = Arc::new(Schema::empty());
    ArtifactEntry::describe(stage_dir, path, rows, &empty)
}

/// The manifest file name inside the stage directory (re-exported for readers).
pub const STAGE_MANIFEST: &str = MANIFEST;
