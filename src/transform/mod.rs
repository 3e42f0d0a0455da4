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

use crate::artifacts::{ArtifactEntry, LoadValidation, Manifest, EXTRACT_DIR, STAGE_DIR};
use crate::catalog::{AddedColumn, Catalog};
use crate::error::Refusal;
use anyhow::{bail, Context, Result};
use arrow::array::{RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;
use engine::SqlFile;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::Instrument;

/// Pipeline outputs with no destination table.
pub const OTHER_OUTPUTS: &[&str] = &["rejects"];

/// What `cleanmig transform` reads and how much memory its engine may use.
#[derive(Debug, Clone)]
pub struct TransformOptions {
    pub artifacts: PathBuf,
    pub pipeline: PathBuf,
    /// The query engine's memory pool, in bytes.
    pub memory_limit: usize,
}

/// What a transform run produced.
#[derive(Debug)]
pub struct Outcome {
    pub stage_dir: PathBuf,
    pub checks: Vec<checks::CheckResult>,
    pub manifest: Manifest,
}

/// The whole stage; a failing blocking check is an error (after everything is written).
#[tracing::instrument(name = "transform", skip_all)]
pub async fn run(opts: &TransformOptions) -> Result<Outcome> {
    let outcome = transform_with(&opts.artifacts, &opts.pipeline, opts.memory_limit).await?;
    let failed: Vec<&checks::CheckResult> = outcome
        .checks
        .iter()
        .filter(|c| !c.passed && c.severity == "blocking")
        .collect();
    if !failed.is_empty() {
        for c in &failed {
            tracing::error!(
                "check {} failed ({} rows): {}\n{}",
                c.name,
                c.failing_rows,
                c.description,
                c.sample_table
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

/// The engine, the extract and the pipeline's files registered, for one run.
struct Run {
    ctx: SessionContext,
    extract: Manifest,
    catalog: Catalog,
    /// `pipeline/load/`, recorded in the stage manifest for the load.
    load_validation: LoadValidation,
    /// Extracted tables registered as `extract_<stem>`, with their files.
    registered: BTreeMap<String, PathBuf>,
    stage_dir: PathBuf,
    memory_limit: usize,
    /// Private scratch directory for large intermediates and spills; removed on drop.
    scratch: tempfile::TempDir,
}

/// [`transform`] with the query engine's memory pool set to `memory_limit` bytes.
///
/// Memory stays bounded whatever the size of the extract: a pipeline file's result larger than
/// a sixteenth of the pool streams into a Parquet file in a private scratch directory (removed
/// afterwards) and later files read it from there; outputs are sorted by the engine and written
/// as they stream; sorts and aggregations spill to the scratch directory when the pool is full,
/// and a file whose hash join outgrows the pool runs again with sort-merge joins
/// ([`engine::with_spilling_joins`]). The previous `stage/` comes back when writing fails.
pub async fn transform_with(
    artifacts: &Path,
    pipeline: &Path,
    memory_limit: usize,
) -> Result<Outcome> {
    let run = open(artifacts, pipeline, memory_limit).await?;
    let results = run_rules(&run, pipeline).await?;
    let previous = PreviousStage::set_aside(&run.stage_dir)?;
    let mut written = write_table_outputs(&run, &results).await?;
    written.extend(write_diffs(&run).await?);

    // Checks and report.
    let check_results = checks::run(&run.ctx, &pipeline.join("checks"))
        .await
        .map_err(|e| explain_memory(e, run.memory_limit))?;
    let checks_path = run.stage_dir.join("checks.json");
    crate::artifacts::write_json(&checks_path, &checks::CheckFile::from(&check_results))?;
    written.insert(
        "checks".into(),
        file_entry(&run.stage_dir, &checks_path, check_results.len() as u64)?,
    );
    let sections = report::sections(&run.ctx, &pipeline.join("report"))
        .await
        .map_err(|e| explain_memory(e, run.memory_limit))?;
    let markdown = report::render(&run.extract, &sections, &check_results, &written);
    let report_path = run.stage_dir.join("report.md");
    crate::artifacts::write_atomic(&report_path, markdown.as_bytes())?;
    written.insert(
        "report".into(),
        file_entry(&run.stage_dir, &report_path, 0)?,
    );
    // The review page is not in the manifest: `cleanmig review` may render it again (with the
    // approval's accepted checks). The approval covers it all the same.
    let review_path = crate::review::write_page(&run.ctx, artifacts, pipeline)
        .await
        .map_err(|e| explain_memory(e, run.memory_limit))?;

    let manifest = Manifest {
        stage: "transform".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        extracted_at: run.extract.extracted_at.clone(),
        source: None,
        fingerprint: run.extract.fingerprint.clone(),
        tables: BTreeMap::new(),
        artifacts: written,
        catalog: Some(run.catalog.clone()),
        load_validation: Some(run.load_validation.clone()),
    };
    manifest.write(&run.stage_dir)?;
    previous.discard();
    summarize(&manifest, &check_results, &report_path, &review_path);
    println!(
        "{}",
        report::render_sections(&sections, Some(report::STDOUT_MAX_ROWS))
    );
    Ok(Outcome {
        stage_dir: run.stage_dir,
        checks: check_results,
        manifest,
    })
}

/// Read the extract's manifest and register the extract, the pipeline's CSV files, the
/// extraction time and the raw source rows with a bounded engine.
async fn open(artifacts: &Path, pipeline: &Path, memory_limit: usize) -> Result<Run> {
    let extract_dir = artifacts.join(EXTRACT_DIR);
    let extract = Manifest::read(&extract_dir).with_context(|| {
        format!(
            "no extract found in {}; run `cleanmig extract` first",
            extract_dir.display()
        )
    })?;
    let catalog = extract.catalog()?.clone();
    let load_validation = LoadValidation::read(pipeline)?;
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
    register_pipeline_inputs(&ctx, &extract, &registered, pipeline).await?;
    Ok(Run {
        ctx,
        extract,
        catalog,
        load_validation,
        registered,
        stage_dir: artifacts.join(STAGE_DIR),
        memory_limit,
        scratch,
    })
}

/// Run `pipeline/transform/*.sql` in file-name order, each registered under its stem.
#[tracing::instrument(name = "rules", skip_all)]
async fn run_rules(run: &Run, pipeline: &Path) -> Result<BTreeMap<String, SqlFile>> {
    let files = SqlFile::read_dir(&pipeline.join("transform"))?;
    if files.is_empty() {
        bail!("no SQL files in {}", pipeline.join("transform").display());
    }
    let mut results: BTreeMap<String, SqlFile> = BTreeMap::new();
    for (i, file) in files.iter().enumerate() {
        // A result no later file reads is only ever read by the write of its output: kept as a
        // plan, it is computed once, there, instead of being written to a scratch file first.
        if !files[i + 1..]
            .iter()
            .any(|later| mentions(&later.sql, &file.name))
        {
            let df = run
                .ctx
                .sql(&file.sql)
                .await
                .with_context(|| format!("{} failed", file.path.display()))?;
            engine::register_view(&run.ctx, &file.name, df)?;
            tracing::debug!(
                "{}: read by no later file; computed as its output is written",
                file.path.display()
            );
            results.insert(file.name.clone(), file.clone());
            continue;
        }
        materialise(run, file)
            .instrument(tracing::info_span!("rule", file = %file.name))
            .await?;
        results.insert(file.name.clone(), file.clone());
    }
    Ok(results)
}

/// Run a rule and register its result under its name: in memory while it is small, else in
/// a scratch file; a hash join that outgrows the pool runs again as a sort-merge join.
async fn materialise(run: &Run, file: &SqlFile) -> Result<()> {
    let spill = run.scratch.path().join(format!("{}.parquet", file.name));
    let what = file.path.display().to_string();
    engine::with_spilling_joins(&run.ctx, &what, || {
        file.run_into(&run.ctx, &file.name, &spill, run.memory_limit / 16)
    })
    .await
    .map_err(|e| explain_memory(e, run.memory_limit))?;
    Ok(())
}

/// [`write_sorted`] of a rule's result into `out`.
///
/// A result kept as a plan ([`run_rules`]) is computed and sorted at once, its joins and the
/// output's sort sharing the pool. When that outgrows the pool (the rejects in a small pool: a
/// join over every source row and a sort of their JSON), the rule is written to a scratch file
/// first, so that its joins are done before the sort starts, and the file is sorted in one
/// partition, with the whole pool. It goes there at the first failure: trying the plan again
/// with sort-merge joins would still sort beside them, and cost as long again before failing.
async fn write_rule_output(
    run: &Run,
    out: &str,
    rule: &SqlFile,
    shape: &dyn Fn(&RecordBatch) -> Result<RecordBatch>,
    build: BuildSides,
) -> Result<ArtifactEntry> {
    if !kept_as_plan(run, &rule.name).await {
        return write_sorted(run, out, &rule.name, shape).await;
    }
    let attempt = write_sorted_as(run, out, &rule.name, shape, Joins::AsPlanned);
    let attempt = match build {
        BuildSides::AsPlanned => attempt.await,
        BuildSides::Whole => engine::with_probe_order_kept(&run.ctx, attempt).await,
    };
    match attempt {
        Err(e) if engine::is_memory_exhausted(&e) => {
            tracing::info!(
                "{out}: computing {} while sorting it outgrew the memory pool; writing it to a scratch file first, then sorting that",
                rule.path.display()
            );
            tracing::debug!("{out}: {e:#}");
            materialise(run, rule).await?;
            engine::in_one_partition(&run.ctx, write_sorted(run, out, &rule.name, shape)).await
        }
        other => other,
    }
}

/// How the hash joins of a rule kept as a plan are built while its output is written.
#[derive(Clone, Copy)]
enum BuildSides {
    /// As the planner chooses: a large join hashes both sides into partitions by key.
    AsPlanned,
    /// Each from its whole build side ([`engine::with_probe_order_kept`]), so that rows read
    /// in the output's order stay in it: the rejects, in the order of the extracted rows.
    Whole,
}

/// Whether `name` is a rule result kept as a plan (a view), not yet computed.
async fn kept_as_plan(run: &Run, name: &str) -> bool {
    run.ctx
        .table_provider(name)
        .await
        .is_ok_and(|t| t.table_type() == datafusion::datasource::TableType::View)
}

/// Whether `sql` may read the table `name`: the name appears in it as a whole word, in any
/// case (a mention in a comment counts too, which errs on the safe side).
fn mentions(sql: &str, name: &str) -> bool {
    let (sql, name) = (sql.to_lowercase(), name.to_lowercase());
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    sql.match_indices(&name).any(|(i, _)| {
        !word(sql[..i].chars().next_back()) && !word(sql[i + name.len()..].chars().next())
    })
}

/// Write every staged table (shaped exactly like its destination table, with the columns the
/// load adds) and the other outputs.
async fn write_table_outputs(
    run: &Run,
    results: &BTreeMap<String, SqlFile>,
) -> Result<BTreeMap<String, ArtifactEntry>> {
    let mut written = BTreeMap::new();
    for table in run.catalog.staged() {
        let name = table.stage_artifact();
        let file = results.get(name).with_context(|| {
            format!("pipeline/transform has no file that produces `{name}` (e.g. NN_{name}.sql)")
        })?;
        let extracted = table.extract_artifact();
        let path = run
            .registered
            .get(&format!("extract_{extracted}"))
            .with_context(|| {
                format!("the extract has no `{extracted}` table ({extracted}.parquet)")
            })?;
        let target = with_added_columns(&engine::parquet_schema(path)?, &table.added_columns)?;
        let not_written: Vec<String> = file
            .headers
            .get("generated")
            .map(|g| g.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        let shape = |b: &RecordBatch| engine::conform(b, &target, &not_written, &file.path);
        // A rule no later file reads runs here: an error names its file.
        let entry = write_rule_output(
            run,
            &format!("{name}.parquet"),
            file,
            &shape,
            BuildSides::AsPlanned,
        )
        .instrument(tracing::info_span!("output", table = name))
        .await
        .with_context(|| file.path.display().to_string())?;
        written.insert(name.to_string(), entry);
    }
    for name in OTHER_OUTPUTS {
        let file = results
            .get(*name)
            .with_context(|| format!("pipeline/transform has no file that produces `{name}`"))?;
        let shape = |b: &RecordBatch| {
            RecordBatch::try_new(engine::plain_schema(&b.schema()), b.columns().to_vec())
                .with_context(|| format!("{}", file.path.display()))
        };
        let entry = write_rule_output(
            run,
            &format!("{name}.parquet"),
            file,
            &shape,
            BuildSides::Whole,
        )
        .await
        .with_context(|| file.path.display().to_string())?;
        written.insert(name.to_string(), entry);
    }
    Ok(written)
}

/// Differences against what the database holds now.
#[tracing::instrument(name = "diff", skip_all)]
async fn write_diffs(run: &Run) -> Result<BTreeMap<String, ArtifactEntry>> {
    let mut written = BTreeMap::new();
    for d in diff::queries(&run.ctx, &run.catalog).await? {
        let shape = |b: &RecordBatch| Ok(b.clone());
        let file = format!("diff/{}.parquet", d.name);
        let entry = write_sorted(run, &file, &format!("({})", d.sql), &shape).await?;
        written.insert(format!("diff/{}", d.name), entry);
    }
    Ok(written)
}

/// One line per artifact and one for the checks, through `tracing` (silenced by `--quiet`).
fn summarize(
    manifest: &Manifest,
    checks: &[checks::CheckResult],
    report: &Path,
    review_path: &Path,
) {
    for (name, entry) in &manifest.artifacts {
        tracing::info!(
            "transform {name}: {} rows, {}",
            crate::artifacts::human_count(entry.rows),
            crate::artifacts::human_bytes(entry.bytes)
        );
    }
    let passed = checks.iter().filter(|c| c.passed).count();
    tracing::info!(
        "transform checks: {passed} of {} passed; report {}; review page {}",
        checks.len(),
        report.display(),
        review_path.display()
    );
}

/// A query stopped because the memory pool was full: say which setting to raise.
fn explain_memory(err: anyhow::Error, memory_limit: usize) -> anyhow::Error {
    if engine::is_memory_exhausted(&err) {
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
    pipeline: &Path,
) -> Result<()> {
    let now = chrono::DateTime::parse_from_rfc3339(&extract.extracted_at)
        .with_context(|| format!("extracted_at `{}` is not RFC 3339", extract.extracted_at))?
        .with_timezone(&chrono::Utc);
    register_extraction(ctx, now)?;
    for source in crate::catalog::read_source_columns(pipeline)?.keys() {
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
            format!(
                "{}, {}",
                crate::sql::literal(f.name()),
                crate::sql::ident(f.name())
            )
        })
        .collect();
    // The extract numbers a source's rows as it copies them, so they ascend by `_source_row`
    // in its file; with that order declared, the rejects (written in it) need no sort of
    // their JSON.
    let df = engine::read_in_order(ctx, path, "_source_row").await?;
    let raw = df
        .parse_sql_expr(&format!("json_object({})", pairs.join(", ")))?
        .alias("raw");
    let df = df.select(vec![datafusion::prelude::col("_source_row"), raw])?;
    ctx.register_table(format!("raw_{source}").as_str(), df.into_view())?;
    Ok(())
}

/// A destination table's schema as extracted, plus the catalogue's columns that the load adds
/// to it when absent.
pub fn with_added_columns(extracted: &SchemaRef, added: &[AddedColumn]) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = extracted
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for col in added {
        if extracted.field_with_name(&col.name).is_ok() {
            continue;
        }
        let kind = crate::pg_arrow::kind_of_type_name(&col.pg_type).with_context(|| {
            format!(
                "added column {}: unsupported type `{}`",
                col.name, col.pg_type
            )
        })?;
        fields.push(crate::pg_arrow::field(&col.name, &kind, &col.pg_type, true));
    }
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        extracted.metadata().clone(),
    )))
}

/// Remove what an earlier run left, so that the stage directory holds this run only.
/// The previous `stage/`, moved aside while the new one is written. It is put back when
/// writing the new one fails, and removed once the new one is complete, so that a failed
/// transform leaves the last stage as it was.
struct PreviousStage {
    stage: PathBuf,
    aside: Option<PathBuf>,
}

impl PreviousStage {
    fn set_aside(stage: &Path) -> Result<Self> {
        let aside = if stage.exists() {
            let aside = stage.with_file_name(format!(".stage.previous-{}", std::process::id()));
            if aside.exists() {
                std::fs::remove_dir_all(&aside)
                    .with_context(|| format!("cannot remove {}", aside.display()))?;
            }
            std::fs::rename(stage, &aside).with_context(|| {
                format!(
                    "cannot move {} aside to {}",
                    stage.display(),
                    aside.display()
                )
            })?;
            Some(aside)
        } else {
            None
        };
        let previous = Self {
            stage: stage.to_path_buf(),
            aside,
        };
        crate::artifacts::create_private_dir(&stage.join("diff"))?;
        Ok(previous)
    }

    /// The new stage is complete: remove the previous one.
    fn discard(mut self) {
        if let Some(aside) = self.aside.take() {
            if let Err(e) = std::fs::remove_dir_all(&aside) {
                tracing::warn!("cannot remove the previous stage {}: {e}", aside.display());
            }
        }
    }
}

impl Drop for PreviousStage {
    fn drop(&mut self) {
        let Some(aside) = self.aside.take() else {
            return;
        };
        let _ = std::fs::remove_dir_all(&self.stage);
        match std::fs::rename(&aside, &self.stage) {
            Ok(()) => tracing::info!("the previous {} is back as it was", self.stage.display()),
            Err(e) => tracing::error!(
                "cannot put the previous stage back from {} to {}: {e}",
                aside.display(),
                self.stage.display()
            ),
        }
    }
}

/// Write `stage/<file>` from `relation` (a table name or a parenthesised query), sorted by every
/// column and shaped by `shape`, and register it under its name (`diff/x` as `diff_x`) for the
/// checks and the report.
async fn write_sorted(
    run: &Run,
    file: &str,
    relation: &str,
    shape: &dyn Fn(&RecordBatch) -> Result<RecordBatch>,
) -> Result<ArtifactEntry> {
    write_sorted_as(run, file, relation, shape, Joins::SpillingWhenNeeded)
        .await
        .map_err(|e| explain_memory(e, run.memory_limit))
}

/// Which joins a write tries.
#[derive(Clone, Copy)]
enum Joins {
    /// The planner's choice only; a pool that runs out is the caller's to handle.
    AsPlanned,
    /// The planner's choice, then sort-merge joins if the pool runs out
    /// ([`engine::with_spilling_joins`]).
    SpillingWhenNeeded,
}

async fn write_sorted_as(
    run: &Run,
    file: &str,
    relation: &str,
    shape: &dyn Fn(&RecordBatch) -> Result<RecordBatch>,
    joins: Joins,
) -> Result<ArtifactEntry> {
    let started = std::time::Instant::now();
    let path = run.stage_dir.join(file);
    let query = format!("SELECT * FROM {relation} AS r");
    let write = || engine::write_sorted(&run.ctx, &query, &path, shape, file);
    let (rows, schema) = match joins {
        Joins::AsPlanned => write().await?,
        Joins::SpillingWhenNeeded => engine::with_spilling_joins(&run.ctx, file, write).await?,
    };
    tracing::debug!(
        "{file}: {rows} rows written, {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let name = file.trim_end_matches(".parquet").replace('/', "_");
    engine::register_parquet_file(&run.ctx, &name, &path).await?;
    ArtifactEntry::describe(&run.stage_dir, &path, rows, &schema)
}

fn file_entry(stage_dir: &Path, path: &Path, rows: u64) -> Result<ArtifactEntry> {
    let empty: SchemaRef = Arc::new(Schema::empty());
    ArtifactEntry::describe(stage_dir, path, rows, &empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run over no extract, with a memory pool of `pool` bytes and the tables of
    /// [`engine::create_two_joinable_tables`].
    async fn run_with_two_tables(dir: &Path, pool: usize) -> Run {
        let stage_dir = dir.join("stage");
        std::fs::create_dir_all(&stage_dir).unwrap();
        let scratch = tempfile::tempdir_in(dir).unwrap();
        let ctx = engine::bounded_session(pool, scratch.path()).unwrap();
        engine::create_two_joinable_tables(&ctx).await;
        Run {
            ctx,
            extract: Manifest {
                stage: "extract".into(),
                tool_version: String::new(),
                extracted_at: String::new(),
                source: None,
                fingerprint: String::new(),
                tables: BTreeMap::new(),
                artifacts: BTreeMap::new(),
                catalog: None,
                load_validation: None,
            },
            catalog: Catalog { tables: Vec::new() },
            load_validation: LoadValidation {
                checks: String::new(),
                figures: String::new(),
            },
            registered: BTreeMap::new(),
            stage_dir,
            memory_limit: pool,
            scratch,
        }
    }

    #[tokio::test]
    async fn a_rule_kept_as_a_plan_that_outgrows_the_pool_is_written_from_a_scratch_file() {
        // Guards bounded memory: a rule no later file reads is computed as its output is
        // written; when its hash join and the output's sort outgrow the pool together, it goes
        // to a scratch file (with sort-merge joins) and the output is sorted from there. So
        // too when its joins hold their build sides whole.
        for build in [BuildSides::AsPlanned, BuildSides::Whole] {
            written_from_a_scratch_file(build).await;
        }
    }

    async fn written_from_a_scratch_file(build: BuildSides) {
        let dir = tempfile::tempdir().unwrap();
        let run = run_with_two_tables(dir.path(), 8 << 20).await;
        let rule = engine::write_sql_file(
            dir.path(),
            "01_joined.sql",
            "-- joined\nSELECT a.k, b.v FROM a JOIN b ON a.k = b.k AND a.v = b.v\n",
        );
        let df = run.ctx.sql(&rule.sql).await.unwrap();
        engine::register_view(&run.ctx, &rule.name, df).unwrap();
        let keep = |b: &RecordBatch| Ok(b.clone());
        let entry = write_rule_output(&run, "joined.parquet", &rule, &keep, build)
            .await
            .unwrap();
        assert_eq!(entry.rows, 200_000);
        assert!(
            run.scratch.path().join("joined.parquet").is_file(),
            "the rule was not written to a scratch file first"
        );
        let shown = engine::shown(
            &run.ctx,
            "SELECT count(*) AS n, count(DISTINCT k) AS keys, min(k) AS lo, max(k) AS hi \
             FROM \"joined\"",
        )
        .await;
        assert!(
            shown.contains("| 200000 | 200000 | 1  | 200000 |"),
            "{shown}"
        );
        // Sorted by every column, as every output is.
        let file = std::fs::File::open(run.stage_dir.join("joined.parquet")).unwrap();
        let written = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = written.map(|b| b.unwrap()).collect();
        let keys = engine::first_i64_column(&batches);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_result_counts_as_read_wherever_its_name_appears_as_a_word() {
        // Guards the rules: a result a later file reads must be materialised before it runs.
        assert!(mentions("SELECT * FROM payments WHERE x", "payments"));
        assert!(mentions("select * from PAYMENTS", "payments"));
        assert!(mentions("FROM \"payments\" p", "payments"));
        assert!(mentions("-- built from payments\nSELECT 1", "payments"));
        assert!(mentions("JOIN payments", "payments"));
        assert!(!mentions("SELECT * FROM payments_by_month", "payments"));
        assert!(!mentions("SELECT * FROM extract_payments", "payments"));
        assert!(!mentions("SELECT 1", "payments"));
    }
}
