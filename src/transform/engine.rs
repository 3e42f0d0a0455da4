//! The machinery that runs `pipeline/` SQL in DataFusion: registering artifacts and
//! configuration as tables, generic UDFs, running files in order, shaping and sorting
//! results. No business rule lives here.

use crate::artifacts::ParquetArtifact;
use anyhow::{bail, Context, Result};
use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use arrow::compute::{cast, cast_with_options, concat_batches, take, BatchCoalescer, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use futures_util::StreamExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Namespace of every deterministic id the pipeline makes: UUIDv5 of the DNS name `cleanmig`
/// (`uuid_v5(name)` in SQL is UUIDv5(NAMESPACE, name)).
pub fn id_namespace() -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, b"cleanmig")
}

/// A DataFusion session with the generic functions the pipeline may call.
pub fn session() -> SessionContext {
    let ctx = SessionContext::new_with_config(session_config());
    register_udfs(&ctx);
    ctx
}

/// The most spill files a sort merges at once. A merge reserves a buffer per file and cannot
/// spill: left unbounded, one sort's merge of every file it spilled took the whole pool (1 GB at
/// scale 300) and left the sort beside it, in the other partition, nothing to merge its own.
const SPILL_MERGE_FAN_IN: usize = 16;

/// A session whose operators share a memory pool of `memory_limit` bytes and spill sorts and
/// aggregations to files in `spill_dir` when it is full.
///
/// Results kept in memory between pipeline files ([`SqlFile::run_into`]) are counted in the
/// same pool, up to a quarter of it; the reservations a sort holds back for merging its spill
/// files shrink with the pool, so that a small pool still leaves room for the sort itself.
pub fn bounded_session(memory_limit: usize, spill_dir: &Path) -> Result<SessionContext> {
    bounded_session_merging(memory_limit, spill_dir, SPILL_MERGE_FAN_IN)
}

/// [`bounded_session`] whose sorts merge at most `fan_in` spill files at once.
fn bounded_session_merging(
    memory_limit: usize,
    spill_dir: &Path,
    fan_in: usize,
) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(TrackConsumersPool::new(
            HeadroomPool::new(memory_limit),
            std::num::NonZeroUsize::new(5).expect("non-zero"),
        )))
        .with_temp_file_path(spill_dir)
        .with_max_spill_merge_fan_in(fan_in)
        .build_arc()
        .context("cannot set up the query engine's memory pool")?;
    let held = HeldResults {
        reservation: std::sync::Mutex::new(
            MemoryConsumer::new("results held between pipeline files")
                .register(&runtime.memory_pool),
        ),
        cap: memory_limit / 4,
    };
    let merge_reserve = (memory_limit / 32).clamp(256 << 10, 10 << 20);
    // A batch is the unit every operator reserves at once (a sort asks for twice its size
    // with nothing else to spill), so a small pool gets small batches.
    let batch_rows = (memory_limit / (128 << 10)).clamp(256, 8192);
    let config = session_config()
        .with_batch_size(batch_rows)
        .set_usize(
            "datafusion.execution.sort_spill_reservation_bytes",
            merge_reserve,
        )
        .set_usize(
            "datafusion.execution.sort_in_place_threshold_bytes",
            merge_reserve / 10,
        )
        .with_extension(Arc::new(held));
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    register_udfs(&ctx);
    Ok(ctx)
}

/// A fair pool in which an operator that can spill holds at most half of what the operators
/// that cannot spill leave free.
///
/// A sort that fits in memory finishes with a merge that needs memory of its own (its rows in
/// row format), and by then its rows can no longer be spilled: had it been allowed all the free
/// memory, it would fail at that last step, and so would the next sort of a plan that runs
/// several. Held to half, each leaves room for its merge and for the sorts after it.
#[derive(Debug)]
struct HeadroomPool {
    inner: FairSpillPool,
    size: usize,
    /// Bytes held by operators that cannot spill.
    unspillable: std::sync::atomic::AtomicUsize,
}

impl HeadroomPool {
    fn new(size: usize) -> Self {
        Self {
            inner: FairSpillPool::new(size),
            size,
            unspillable: Default::default(),
        }
    }

    fn count(&self, reservation: &MemoryReservation, grown: isize) {
        use std::sync::atomic::Ordering;
        if !reservation.consumer().can_spill() {
            if grown >= 0 {
                self.unspillable
                    .fetch_add(grown.unsigned_abs(), Ordering::Relaxed);
            } else {
                self.unspillable
                    .fetch_sub(grown.unsigned_abs(), Ordering::Relaxed);
            }
        }
    }
}

impl std::fmt::Display for HeadroomPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, a spilling operator at most half of what is free",
            self.inner
        )
    }
}

impl MemoryPool for HeadroomPool {
    fn name(&self) -> &str {
        "fair with headroom"
    }
    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }
    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }
    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.count(reservation, additional as isize);
        self.inner.grow(reservation, additional)
    }
    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.count(reservation, -(shrink as isize));
        self.inner.shrink(reservation, shrink)
    }
    fn try_grow(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
    ) -> datafusion::error::Result<()> {
        if reservation.consumer().can_spill() {
            let unspillable = self.unspillable.load(std::sync::atomic::Ordering::Relaxed);
            let cap = self.size.saturating_sub(unspillable) / 2;
            if reservation.size() + additional > cap {
                return Err(datafusion::error::DataFusionError::ResourcesExhausted(
                    format!(
                        "{} may hold at most {cap} bytes, half of what is free; it spills",
                        reservation.consumer().name(),
                    ),
                ));
            }
        }
        self.inner.try_grow(reservation, additional)?;
        self.count(reservation, additional as isize);
        Ok(())
    }
    fn reserved(&self) -> usize {
        self.inner.reserved()
    }
    fn memory_limit(&self) -> datafusion::execution::memory_pool::MemoryLimit {
        self.inner.memory_limit()
    }
}

/// The memory pool's account of pipeline results held in memory (see [`bounded_session`]).
struct HeldResults {
    reservation: std::sync::Mutex<MemoryReservation>,
    /// The most the held results may take together.
    cap: usize,
}

impl HeldResults {
    /// Count `bytes` more of held results; false when they would not fit.
    fn try_hold(&self, bytes: usize) -> bool {
        let r = self.reservation.lock().unwrap_or_else(|e| e.into_inner());
        r.size() + bytes <= self.cap && r.try_grow(bytes).is_ok()
    }

    fn release(&self, bytes: usize) {
        let r = self.reservation.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = bytes.min(r.size());
        r.shrink(bytes);
    }
}

/// Whether `err` says the memory pool was exhausted.
pub fn is_memory_exhausted(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<datafusion::error::DataFusionError>(),
            Some(datafusion::error::DataFusionError::ResourcesExhausted(_))
        ) || e.to_string().contains("Resources exhausted")
    })
}

/// Run `attempt`; when it exhausts the memory pool, run it once more with sort-merge joins.
///
/// A hash join holds its whole build side in memory and cannot spill; a sort-merge join sorts
/// both sides, and sorts spill. Hash joins are faster while they fit, so they are the first
/// choice. The result is the same either way (outputs are sorted by every column).
pub async fn with_spilling_joins<T, F, Fut>(
    ctx: &SessionContext,
    what: &str,
    attempt: F,
) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let baseline = ctx.runtime_env().memory_pool.reserved();
    match attempt().await {
        Err(e) if is_memory_exhausted(&e) => {
            tracing::info!(
                "{what} outgrew the memory pool; running it again with sort-merge joins in place of hash joins, which cannot spill"
            );
            settle(ctx, baseline).await;
            set_option(ctx, "datafusion.optimizer.prefer_hash_join", false).await?;
            let result = attempt().await;
            set_option(ctx, "datafusion.optimizer.prefer_hash_join", true).await?;
            result
        }
        other => other,
    }
}

/// Wait, a second at most, until the memory pool holds no more than `baseline` bytes, what it
/// held before a query that failed for want of memory. The failed query's operators give their
/// memory back as their tasks wind down, a moment after its error comes back; run again at
/// once, it could find part of the pool still taken by its own first attempt.
async fn settle(ctx: &SessionContext, baseline: usize) {
    let pool = &ctx.runtime_env().memory_pool;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while pool.reserved() > baseline && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// How many independent queries [`side_by_side`] runs at once: one per core of the machines
/// the tool is measured on. Planning and the last step of a query (a merge, a collect) take
/// one core each, which a small query is mostly made of.
pub const QUERIES_AT_ONCE: usize = 2;

/// Run `query` for every item, [`QUERIES_AT_ONCE`] at a time on the runtime's threads, and
/// return the results in the items' order.
///
/// The queries share the memory pool. One that exhausts it beside the others runs again once
/// they are done, alone, with [`with_spilling_joins`]: so a small pool gives the same results
/// as when the queries run one after the other, only later. An attempt side by side never
/// changes the session's options (the fallback does, when nothing else runs).
pub async fn side_by_side<I, T, F, Fut>(
    ctx: &SessionContext,
    items: Vec<I>,
    what: impl Fn(&I) -> String,
    query: F,
) -> Result<Vec<T>>
where
    I: Clone,
    T: Send + 'static,
    F: Fn(SessionContext, I) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    use tracing::Instrument;
    let baseline = ctx.runtime_env().memory_pool.reserved();
    let attempts: Vec<Result<T>> = futures_util::stream::iter(items.iter().cloned())
        .map(|item| {
            let task = tokio::spawn(query(ctx.clone(), item).in_current_span());
            async move { task.await.context("a query's task failed")? }
        })
        .buffered(QUERIES_AT_ONCE)
        .collect()
        .await;
    let mut out = Vec::with_capacity(items.len());
    for (item, attempt) in items.into_iter().zip(attempts) {
        match attempt {
            Err(e) if is_memory_exhausted(&e) => {
                let what = what(&item);
                tracing::info!(
                    "{what} outgrew the memory pool beside other queries; running it again alone"
                );
                tracing::debug!("{what}: {e:#}");
                settle(ctx, baseline).await;
                let again =
                    with_spilling_joins(ctx, &what, || query(ctx.clone(), item.clone())).await?;
                out.push(again);
            }
            other => out.push(other?),
        }
    }
    Ok(out)
}

/// Run `attempt` with every plan in one partition: one sort, which then has the whole pool to
/// itself, where two sorting side by side can leave one of them nothing to start with.
pub async fn in_one_partition<T, Fut>(ctx: &SessionContext, attempt: Fut) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let partitions = ctx.state().config().target_partitions();
    set_option(ctx, "datafusion.execution.target_partitions", 1).await?;
    let result = attempt.await;
    set_option(ctx, "datafusion.execution.target_partitions", partitions).await?;
    result
}

/// Run `attempt` with every hash join building one table from its whole build side, so that
/// each partition of its probe side comes out in the order it went in: a write whose sort
/// that order already gives (the rejects, in the order of the extracted rows,
/// [`read_in_order`]) then merges its partitions instead of sorting every row. The build
/// sides are held whole; one that outgrows the pool fails as any join does, and the caller's
/// fallback applies.
pub async fn with_probe_order_kept<T, Fut>(ctx: &SessionContext, attempt: Fut) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    const BYTES: &str = "datafusion.optimizer.hash_join_single_partition_threshold";
    const ROWS: &str = "datafusion.optimizer.hash_join_single_partition_threshold_rows";
    let optimizer = ctx.state().config().options().optimizer.clone();
    set_option(ctx, BYTES, i64::MAX).await?;
    set_option(ctx, ROWS, i64::MAX).await?;
    let result = attempt.await;
    set_option(ctx, BYTES, optimizer.hash_join_single_partition_threshold).await?;
    set_option(
        ctx,
        ROWS,
        optimizer.hash_join_single_partition_threshold_rows,
    )
    .await?;
    result
}

/// `SET <option> = <value>` for the rest of the session.
async fn set_option(
    ctx: &SessionContext,
    option: &str,
    value: impl std::fmt::Display,
) -> Result<()> {
    ctx.sql(&format!("SET {option} = {value}"))
        .await?
        .collect()
        .await?;
    Ok(())
}

fn register_udfs(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(UuidV5::new()));
    ctx.register_udf(ScalarUDF::from(JsonObject::new()));
    ctx.register_udf(ScalarUDF::from(ToUtc::new()));
}

fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(true)
        .set_str("datafusion.sql_parser.enable_ident_normalization", "true")
        // plain Utf8 everywhere, as the artifacts store it
        .set_str(
            "datafusion.execution.parquet.schema_force_view_types",
            "false",
        )
        .set_str(
            "datafusion.sql_parser.map_string_types_to_utf8view",
            "false",
        )
}

/// The files of `dir` ending in `.ext`, in file-name order.
fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Register every `*.parquet` in `dir` as `<prefix><stem>`; returns the names registered,
/// with their files.
pub async fn register_parquet_dir(
    ctx: &SessionContext,
    dir: &Path,
    prefix: &str,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for path in files_with_extension(dir, "parquet")? {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stem.starts_with('.') {
            continue;
        }
        let name = format!("{prefix}{stem}");
        // Registered as one bare name whatever its characters (a stem may hold `%XX`).
        ctx.register_parquet(
            datafusion::common::TableReference::bare(name.as_str()),
            path.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await
        .with_context(|| format!("cannot register {}", path.display()))?;
        out.insert(name, path);
    }
    Ok(out)
}

/// Register every `*.csv` in `dir` as a table named by its stem, every column text.
pub async fn register_csv_dir(ctx: &SessionContext, dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    if !dir.is_dir() {
        return Ok(names);
    }
    for path in files_with_extension(dir, "csv")? {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let header = text.lines().next().unwrap_or_default();
        let schema = Schema::new(
            header
                .split(',')
                .map(|h| Field::new(h.trim(), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        );
        // Held in memory: the files are small, and a table in memory tells the planner its
        // exact size, so that a join builds its hash table on the small side (a CSV file's
        // size is unknown to the planner).
        let schema = Arc::new(schema);
        let batches = arrow::csv::ReaderBuilder::new(schema.clone())
            .with_header(true)
            .build(File::open(&path).with_context(|| format!("cannot read {}", path.display()))?)
            .with_context(|| format!("cannot read {}", path.display()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .with_context(|| format!("{} is not valid CSV", path.display()))?;
        register_batches(ctx, &stem, schema, batches)
            .with_context(|| format!("cannot register {}", path.display()))?;
        names.push(stem);
    }
    Ok(names)
}

/// The Arrow schema of a Parquet file (with field metadata).
pub fn parquet_schema(path: &Path) -> Result<SchemaRef> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?;
    Ok(builder.schema().clone())
}

/// The Parquet file `path`, its rows declared to the planner as ascending by the `Int64`
/// column `column` when they are (checked here, on that column alone): a join that keeps its
/// probe side's order and a write sorted by that column then need no sort. Read as it is
/// otherwise.
pub async fn read_in_order(ctx: &SessionContext, path: &Path, column: &str) -> Result<DataFrame> {
    let options = ParquetReadOptions::default();
    let options = if ascending(path, column)? {
        options.file_sort_order(vec![vec![
            datafusion::prelude::col(column).sort(true, false)
        ]])
    } else {
        tracing::debug!(
            "{}: `{column}` does not ascend row by row; read without an order",
            path.display()
        );
        options
    };
    ctx.read_parquet(path.to_string_lossy().as_ref(), options)
        .await
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Whether the `Int64` column `column` of the Parquet file `path` has no NULL and rises
/// strictly from each row to the next.
fn ascending(path: &Path, column: &str) -> Result<bool> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?;
    let Ok(index) = builder.schema().index_of(column) else {
        return Ok(false);
    };
    if builder.schema().field(index).data_type() != &DataType::Int64 {
        return Ok(false);
    }
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .build()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut last: Option<i64> = None;
    for batch in reader {
        let batch = batch.with_context(|| format!("cannot read {}", path.display()))?;
        let values = batch.column(0).as_primitive::<Int64Type>();
        if values.null_count() > 0 {
            return Ok(false);
        }
        for &v in values.values() {
            if last.is_some_and(|l| v <= l) {
                return Ok(false);
            }
            last = Some(v);
        }
    }
    Ok(true)
}

/// Register one Parquet file as a table (replacing one of the same name).
pub async fn register_parquet_file(ctx: &SessionContext, name: &str, path: &Path) -> Result<()> {
    let _ = ctx.deregister_table(name)?;
    ctx.register_parquet(
        name,
        path.to_string_lossy().as_ref(),
        ParquetReadOptions::default(),
    )
    .await
    .with_context(|| format!("cannot register {}", path.display()))
}

/// Rows per batch written to a staged artifact.
const ARTIFACT_BATCH_ROWS: usize = 8192;

/// How many leading columns a write sorts by first ([`write_sorted`]). Every artifact the
/// pipeline writes today is unique on its first two: a key (`id`, or `instance_id, id`), or
/// `changed_columns, id`, or `source_table, _source_row`.
const SORT_PREFIX: usize = 2;

/// Run `query`, sort its rows by every column (ascending, NULLs first) and stream them through
/// `shape` into the Parquet file `dest`; returns the rows written and the file's schema.
/// The sort spills to disk when the memory pool is full, so no result is held whole.
///
/// The rows are first sorted by their leading [`SORT_PREFIX`] columns only, which costs a
/// fraction of encoding whole rows (a reject's raw JSON) for the sort. Where no two rows tie on
/// those columns, that order is the order by every column, and the bytes are the same. Ties are
/// looked for while writing; at the first one the file is dropped and written again sorted by
/// every column.
pub async fn write_sorted(
    ctx: &SessionContext,
    query: &str,
    dest: &Path,
    shape: &dyn Fn(&RecordBatch) -> Result<RecordBatch>,
    what: &str,
) -> Result<(u64, SchemaRef)> {
    if let Some(written) = write_sorted_by(ctx, query, dest, shape, what, Some(SORT_PREFIX)).await?
    {
        return Ok(written);
    }
    tracing::debug!(
        "{what}: rows tie on their first {SORT_PREFIX} columns; sorting by every column"
    );
    write_sorted_by(ctx, query, dest, shape, what, None)
        .await?
        .with_context(|| format!("{what}: sorting by every column found a tie"))
}

/// [`write_sorted`] by the leading `prefix` columns (every column when `None` or when there
/// are no more); `None` back when two rows tie on a strict prefix, with nothing written.
async fn write_sorted_by(
    ctx: &SessionContext,
    query: &str,
    dest: &Path,
    shape: &dyn Fn(&RecordBatch) -> Result<RecordBatch>,
    what: &str,
    prefix: Option<usize>,
) -> Result<Option<(u64, SchemaRef)>> {
    let context = || format!("{what} failed");
    let df = ctx.sql(query).await.with_context(context)?;
    let width = df.schema().fields().len();
    let by = prefix.map_or(width, |p| p.min(width));
    let keys: Vec<SortExpr> = df
        .schema()
        .iter()
        .take(by)
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())).sort(true, true))
        .collect();
    let df = if keys.is_empty() {
        df
    } else {
        df.sort(keys).with_context(context)?
    };
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.with_context(context)?;
    let mut stream =
        datafusion::physical_plan::execute_stream(plan.clone(), task).with_context(context)?;
    // Ties only matter when the sort left columns out.
    let mut ties = (by < width)
        .then(|| Ties::new(&stream.schema(), by))
        .transpose()?;
    let schema = shape(&RecordBatch::new_empty(stream.schema()))?.schema();
    let mut out = ParquetArtifact::create(dest, schema.clone())?;
    let write_error = || format!("cannot write {}", dest.display());
    // Written in batches of one fixed size whatever size the engine's batches are (it depends
    // on the memory pool), because a Parquet page ends where a written batch does: the same
    // rows give the same bytes.
    let mut coalescer = BatchCoalescer::new(schema.clone(), ARTIFACT_BATCH_ROWS);
    while let Some(batch) = stream.next().await {
        let batch = batch.with_context(context)?;
        if let Some(ties) = ties.as_mut() {
            if ties.found_in(&batch)? {
                return Ok(None);
            }
        }
        coalescer.push_batch(shape(&batch)?)?;
        while let Some(batch) = coalescer.next_completed_batch() {
            out.write(&batch).with_context(write_error)?;
        }
    }
    coalescer.finish_buffered_batch()?;
    while let Some(batch) = coalescer.next_completed_batch() {
        out.write(&batch).with_context(write_error)?;
    }
    let (_, rows) = out.finish()?;
    // `-vv`: the plan each operator ran, with its rows, time, memory and spills
    tracing::trace!(
        "{what} plan:\n{}",
        datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref())
            .indent(true)
    );
    Ok(Some((rows, schema)))
}

/// Looks for two consecutive rows of a sorted stream that are equal on its sort columns.
struct Ties {
    converter: RowConverter,
    columns: usize,
    last: Option<arrow::row::OwnedRow>,
}

impl Ties {
    fn new(schema: &SchemaRef, columns: usize) -> Result<Self> {
        let fields = schema
            .fields()
            .iter()
            .take(columns)
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Self {
            converter: RowConverter::new(fields)?,
            columns,
            last: None,
        })
    }

    /// Whether `batch` (the next one of the stream) holds a row equal to the row before it.
    fn found_in(&mut self, batch: &RecordBatch) -> Result<bool> {
        if batch.num_rows() == 0 {
            return Ok(false);
        }
        let rows = self
            .converter
            .convert_columns(&batch.columns()[..self.columns])?;
        let tie_at_start = self.last.as_ref().is_some_and(|l| l.row() == rows.row(0));
        let tie_inside = (1..rows.num_rows()).any(|i| rows.row(i) == rows.row(i - 1));
        self.last = Some(rows.row(rows.num_rows() - 1).owned());
        Ok(tie_at_start || tie_inside)
    }
}

/// Register a query's plan as a view (replacing a table of the same name).
pub fn register_view(
    ctx: &SessionContext,
    name: &str,
    df: datafusion::dataframe::DataFrame,
) -> Result<()> {
    let _ = ctx.deregister_table(name)?;
    ctx.register_table(
        datafusion::common::TableReference::bare(name),
        df.into_view(),
    )?;
    Ok(())
}

/// Register batches as a table (replacing one of the same name).
pub fn register_batches(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    let _ = ctx.deregister_table(name)?;
    let table = MemTable::try_new(schema, vec![batches])?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// The output a SQL file produces: its file stem without a leading `NN_` order prefix.
pub fn output_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.split_once('_') {
        Some((n, rest)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
            rest.to_string()
        }
        _ => stem,
    }
}

/// Header comments a SQL file may carry (`-- severity: warning`).
pub const HEADER_KEYS: &[&str] = &["severity", "description", "generated"];

/// One SQL file of the pipeline.
#[derive(Debug, Clone)]
pub struct SqlFile {
    pub path: PathBuf,
    /// Output name: the file stem without a leading `NN_` order prefix.
    pub name: String,
    pub sql: String,
    /// `-- key: value` header comments (lower-cased keys).
    pub headers: BTreeMap<String, String>,
    /// The first comment line, as a description.
    pub description: String,
}

impl SqlFile {
    pub fn read(path: &Path) -> Result<Self> {
        let sql = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let name = output_name(path);
        let mut headers = BTreeMap::new();
        let mut description = String::new();
        for line in sql.lines() {
            let Some(comment) = line.trim().strip_prefix("--") else {
                if line.trim().is_empty() {
                    continue;
                }
                break;
            };
            let comment = comment.trim();
            match comment.split_once(':') {
                Some((k, v)) if HEADER_KEYS.contains(&k.trim().to_ascii_lowercase().as_str()) => {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                _ => {
                    if description.is_empty() {
                        description = comment.to_string();
                    }
                }
            }
        }
        if let Some(d) = headers.get("description") {
            description = d.clone();
        }
        Ok(Self {
            path: path.to_path_buf(),
            name,
            sql,
            headers,
            description,
        })
    }

    /// The `*.sql` files of a directory in file-name order.
    pub fn read_dir(dir: &Path) -> Result<Vec<Self>> {
        files_with_extension(dir, "sql")?
            .iter()
            .map(|p| Self::read(p))
            .collect()
    }

    /// Run the statement and collect its result into one batch; with sort-merge joins when its
    /// hash joins outgrow the pool ([`with_spilling_joins`]).
    pub async fn run(&self, ctx: &SessionContext) -> Result<RecordBatch> {
        let what = self.path.display().to_string();
        with_spilling_joins(ctx, &what, || self.run_once(ctx)).await
    }

    /// [`SqlFile::run`] as planned, without running it again when it outgrows the pool (as
    /// [`side_by_side`] runs a query).
    pub async fn run_once(&self, ctx: &SessionContext) -> Result<RecordBatch> {
        let started = std::time::Instant::now();
        let batch = self.run_inner(ctx).await?;
        tracing::debug!(
            "{}: {} rows, {:.2} s",
            self.path.display(),
            batch.num_rows(),
            started.elapsed().as_secs_f64()
        );
        Ok(batch)
    }

    /// Run the statement and register its result as table `name` for the files that follow;
    /// returns the scratch file when the result went to disk.
    ///
    /// A small result stays in memory, counted in the session's memory pool (see
    /// [`bounded_session`]). One that outgrows `in_memory_limit` bytes, or the pool's room for
    /// held results, streams
    /// into a Parquet file at `spill_path`, so that only the operators' working state is held in
    /// memory, not the result. Both carry exact row counts, which the planner needs to pick
    /// the small side of a join (without them a cross join with a one-row settings table
    /// buffers the large side).
    pub async fn run_into(
        &self,
        ctx: &SessionContext,
        name: &str,
        spill_path: &Path,
        in_memory_limit: usize,
    ) -> Result<Option<PathBuf>> {
        let started = std::time::Instant::now();
        let context = || format!("{} failed", self.path.display());
        let df = ctx.sql(&self.sql).await.with_context(context)?;
        let plan = df.create_physical_plan().await.with_context(context)?;
        let mut stream = datafusion::physical_plan::execute_stream(plan.clone(), ctx.task_ctx())
            .with_context(context)?;
        let schema = stream.schema();
        let mut held: Vec<RecordBatch> = Vec::new();
        let mut held_bytes = 0usize;
        let held_account = ctx.state().config().get_extension::<HeldResults>();
        let mut counted = 0usize;
        let mut writer: Option<ParquetArtifact> = None;
        let mut rows = 0u64;
        let write_error = || format!("cannot write {}", spill_path.display());
        while let Some(batch) = stream.next().await {
            let batch = batch.with_context(context)?;
            // Batches may differ from the plan's schema in field nullability or metadata.
            let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                .with_context(context)?;
            rows += batch.num_rows() as u64;
            if let Some(w) = writer.as_mut() {
                w.write(&batch).with_context(write_error)?;
                continue;
            }
            let bytes = batch.get_array_memory_size();
            held_bytes += bytes;
            held.push(batch);
            let pool_has_room = held_account.as_ref().is_none_or(|h| {
                let ok = h.try_hold(bytes);
                counted += if ok { bytes } else { 0 };
                ok
            });
            if held_bytes > in_memory_limit || !pool_has_room {
                if let Some(h) = held_account.as_ref() {
                    h.release(std::mem::take(&mut counted));
                }
                let mut w = ParquetArtifact::scratch(spill_path, schema.clone())
                    .with_context(write_error)?;
                for b in held.drain(..) {
                    w.write(&b).with_context(write_error)?;
                }
                writer = Some(w);
            }
        }
        let on_disk = match writer {
            Some(w) => {
                w.finish().with_context(write_error)?;
                register_parquet_file(ctx, name, spill_path).await?;
                Some(spill_path.to_path_buf())
            }
            None => {
                let batch = concat_batches(&schema, &held).with_context(context)?;
                register_batches(ctx, name, schema, vec![batch])?;
                None
            }
        };
        tracing::debug!(
            "{}: {} rows{}, {:.2} s",
            self.path.display(),
            rows,
            if on_disk.is_some() { " (on disk)" } else { "" },
            started.elapsed().as_secs_f64()
        );
        // `-vv`: the plan each operator ran, with its rows, time, memory and spills
        tracing::trace!(
            "{} plan:\n{}",
            self.path.display(),
            datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(
                plan.as_ref()
            )
            .indent(true)
        );
        Ok(on_disk)
    }

    async fn run_inner(&self, ctx: &SessionContext) -> Result<RecordBatch> {
        let context = || format!("{} failed", self.path.display());
        let df = ctx.sql(&self.sql).await.with_context(context)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.with_context(context)?;
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        concat_batches(&schema, &batches).with_context(context)
    }
}

/// Sort every row of a batch by all its columns, left to right, so that the same content
/// always gives the same bytes whatever order the engine produced it in.
pub fn sort_all_columns(batch: &RecordBatch) -> Result<RecordBatch> {
    if batch.num_rows() <= 1 || batch.num_columns() == 0 {
        return Ok(batch.clone());
    }
    let fields = batch
        .schema()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(batch.columns())?;
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_by(|a, b| rows.row(*a as usize).cmp(&rows.row(*b as usize)));
    let indices = arrow::array::UInt32Array::from(order);
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Shape a result to a target schema: the target's columns in the target's order and types
/// (field metadata included). Target columns listed in `not_written` (generated columns)
/// are left out; any other target column the SQL does not produce, or a column the SQL
/// produces that the target lacks, is an error naming the file.
pub fn conform(
    batch: &RecordBatch,
    target: &Schema,
    not_written: &[String],
    file: &Path,
) -> Result<RecordBatch> {
    let produced = batch.schema();
    for f in produced.fields() {
        if target.field_with_name(f.name()).is_err() {
            bail!(
                "{} produces column `{}`, which the destination table does not have (its columns: {})",
                file.display(),
                f.name(),
                target.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for f in target.fields() {
        if not_written.iter().any(|n| n == f.name()) {
            continue;
        }
        let Ok(idx) = produced.index_of(f.name()) else {
            bail!(
                "{} does not produce column `{}` of the destination table; add it (NULL if unknown) or list it under `-- generated:`",
                file.display(),
                f.name()
            );
        };
        let col = batch.column(idx);
        let col = if col.data_type() == f.data_type() {
            col.clone()
        } else if col.data_type() == &DataType::Null {
            new_null_array(f.data_type(), batch.num_rows())
        } else {
            cast_checked(batch, idx, f.data_type(), file)?
        };
        if !f.is_nullable() && col.null_count() > 0 {
            bail!(
                "{}: column `{}` is NOT NULL in the destination table but is NULL in {} rows of one batch of the result",
                file.display(),
                f.name(),
                col.null_count()
            );
        }
        fields.push(f.as_ref().clone());
        columns.push(col);
    }
    let schema = Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Cast column `idx` of a result to its destination type. Arrow's cast turns a value it cannot
/// convert into NULL; here that value is an error naming the file, output, column, row and
/// value, and so is a number that would lose its fraction in an integer column. (A decimal
/// with more places than the column's scale is rounded, as Postgres rounds it.)
fn cast_checked(batch: &RecordBatch, idx: usize, to: &DataType, file: &Path) -> Result<ArrayRef> {
    let col = batch.column(idx);
    let schema = batch.schema();
    let name = schema.field(idx).name();
    let from = col.data_type();
    let out = cast(col.as_ref(), to).with_context(|| {
        format!(
            "{}: column `{name}` is {from} and cannot become {to}",
            file.display()
        )
    })?;
    let mut lost = None;
    if out.null_count() > col.null_count() {
        lost = (0..col.len()).find(|&i| col.is_valid(i) && out.is_null(i));
    } else if to.is_integer() && from.is_numeric() && !from.is_integer() {
        let back = cast(out.as_ref(), from)?;
        let differs = arrow::compute::kernels::cmp::distinct(col, &back)?;
        lost = (0..differs.len()).find(|&i| differs.value(i));
    }
    let Some(i) = lost else {
        return Ok(out);
    };
    let row = match schema.index_of("id") {
        Ok(id) => format!("the row with id {}", display_value(batch.column(id), i)),
        Err(_) => format!("row {} of a result batch (the output has no `id`)", i + 1),
    };
    bail!(
        "{}: output `{}`, column `{name}`, {row}: value {} ({from}) does not convert to {to}; \
         fix the SQL so that it gives a valid value (or NULL on purpose)",
        file.display(),
        output_name(file),
        display_value(col, i),
    )
}

/// One value as it reads in an error message (text quoted, long values cut).
fn display_value(array: &ArrayRef, i: usize) -> String {
    let mut text = arrow::util::display::array_value_to_string(array, i)
        .unwrap_or_else(|_| "(not shown)".into());
    if text.chars().count() > 80 {
        text = text.chars().take(80).collect::<String>() + "…";
    }
    if matches!(
        array.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        format!("'{text}'")
    } else {
        text
    }
}

/// Drop all metadata from a schema's fields (for artifacts that have no destination table).
pub fn plain_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), f.is_nullable()))
            .collect::<Vec<_>>(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Generic functions for SQL

/// `uuid_v5(name)`: the UUIDv5 of `name` in [`id_namespace`], canonical lowercase text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UuidV5 {
    signature: Signature,
}

impl UuidV5 {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for UuidV5 {
    fn name(&self) -> &str {
        "uuid_v5"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = cast(&arrays[0], &DataType::Utf8)?;
        let input = input
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let ns = id_namespace();
        let out: StringArray = input
            .iter()
            .map(|v| v.map(|s| uuid::Uuid::new_v5(&ns, s.as_bytes()).to_string()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `json_object(key1, value1, key2, value2, ...)`: a JSON object as text; values are written
/// as JSON strings (NULL as null), keys in the order given.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonObject {
    signature: Signature,
}

impl JsonObject {
    fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonObject {
    fn name(&self) -> &str {
        "json_object"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        if args.args.len() % 2 != 0 {
            return Err(datafusion::error::DataFusionError::Plan(
                "json_object takes key, value pairs".into(),
            ));
        }
        let n = args.number_rows;
        // booleans stay JSON booleans; everything else is written as a string
        let kinds: Vec<bool> = args
            .args
            .iter()
            .map(|a| a.data_type() == DataType::Boolean)
            .collect();
        let as_text = |a: &ColumnarValue| -> datafusion::error::Result<ArrayRef> {
            Ok(cast(&a.to_array(n)?, &DataType::Utf8)?)
        };
        let out = match constant_keys(&args.args) {
            // Constant keys are not expanded to one value per row: only the values are.
            Some(keys) => {
                let values = args
                    .args
                    .iter()
                    .skip(1)
                    .step_by(2)
                    .map(as_text)
                    .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
                let is_bool: Vec<bool> = kinds.iter().skip(1).step_by(2).copied().collect();
                json_objects_with_keys(&keys, &utf8(&values), &is_bool, n)?
            }
            None => {
                let arrays = args
                    .args
                    .iter()
                    .map(as_text)
                    .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
                json_objects(&utf8(&arrays), &kinds, n)
            }
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The keys of a `json_object` call when every key is a distinct, non-null literal (the usual
/// case: column names), each written once as its JSON `"key":` prefix. `None` sends the call to
/// [`json_objects`], which also handles keys that vary by row or repeat.
fn constant_keys(args: &[ColumnarValue]) -> Option<Vec<Vec<u8>>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for pair in args.chunks(2) {
        let ColumnarValue::Scalar(key) = &pair[0] else {
            return None;
        };
        let name = match key {
            datafusion::common::ScalarValue::Utf8(Some(k))
            | datafusion::common::ScalarValue::LargeUtf8(Some(k))
            | datafusion::common::ScalarValue::Utf8View(Some(k)) => k.as_str(),
            _ => return None,
        };
        if names.contains(&name) {
            return None;
        }
        names.push(name);
        let mut prefix = serde_json::to_vec(name).ok()?;
        prefix.push(b':');
        keys.push(prefix);
    }
    Some(keys)
}

/// Arrays cast to Utf8, as string arrays.
fn utf8(arrays: &[ArrayRef]) -> Vec<&StringArray> {
    arrays
        .iter()
        .map(|a| a.as_any().downcast_ref::<StringArray>().expect("Utf8"))
        .collect()
}

/// One JSON object per row, keys in the order given, written straight into the output: the
/// same text as [`json_objects`] without building a map per row. `values[i]` goes with
/// `keys[i]`; `is_bool[i]` writes it as a JSON boolean.
fn json_objects_with_keys(
    keys: &[Vec<u8>],
    values: &[&StringArray],
    is_bool: &[bool],
    n: usize,
) -> datafusion::error::Result<StringArray> {
    let mut out = StringBuilder::with_capacity(n, n * 64);
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    for row in 0..n {
        buf.clear();
        buf.push(b'{');
        for (i, (key, value)) in keys.iter().zip(values).enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(key);
            if value.is_null(row) {
                buf.extend_from_slice(b"null");
            } else if is_bool[i] {
                let truth = value.value(row) == "true";
                buf.extend_from_slice(if truth { b"true" } else { b"false" });
            } else {
                serde_json::to_writer(&mut buf, value.value(row))
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            }
        }
        buf.push(b'}');
        let text = std::str::from_utf8(&buf)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        out.append_value(text);
    }
    Ok(out.finish())
}

/// One JSON object per row through a map: a key that is NULL is left out, a repeated key keeps
/// its first place and its last value.
fn json_objects(strings: &[&StringArray], kinds: &[bool], n: usize) -> StringArray {
    let mut out = StringBuilder::new();
    for row in 0..n {
        let mut map = serde_json::Map::new();
        for (i, pair) in strings.chunks(2).enumerate() {
            if pair[0].is_null(row) {
                continue;
            }
            let key = pair[0].value(row).to_string();
            let value = if pair[1].is_null(row) {
                serde_json::Value::Null
            } else if kinds[2 * i + 1] {
                serde_json::Value::Bool(pair[1].value(row) == "true")
            } else {
                serde_json::Value::String(pair[1].value(row).to_string())
            };
            map.insert(key, value);
        }
        out.append_value(serde_json::Value::Object(map).to_string());
    }
    out.finish()
}

/// `to_utc(text, utc_offset)`: an ISO 8601 timestamp (`2024-03-05T14:22:01`, a space for the
/// `T`, optional fraction) as a UTC TIMESTAMP without zone, the type `CAST(text AS TIMESTAMP)`
/// gives.
///
/// Text that has a time (`hh:mm`) and ends in `Z` or an offset (`+08`, `+0800`, `+08:00`) is
/// read as written. Any other text is local time at `utc_offset` (an offset such as `+08:00`):
/// the offset is appended before reading. Surrounding spaces are ignored (as SQL `trim`
/// does). NULL, `''` and text that does not read as a timestamp (also: a date without a time)
/// give NULL, so a caller tells "missing" from "unreadable" by looking at the text. Zone
/// names are the caller's business: resolve them to an offset first.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToUtc {
    signature: Signature,
}

impl ToUtc {
    fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

/// The type `to_utc` returns (that of SQL `TIMESTAMP`).
const TO_UTC_TYPE: DataType = DataType::Timestamp(TimeUnit::Nanosecond, None);

impl ScalarUDFImpl for ToUtc {
    fn name(&self) -> &str {
        "to_utc"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(TO_UTC_TYPE)
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| Ok(cast(&a.to_array(n)?, &DataType::Utf8)?))
            .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
        let [text, offset] = arrays.as_slice() else {
            return Err(datafusion::error::DataFusionError::Plan(
                "to_utc takes two arguments: text and a UTC offset".into(),
            ));
        };
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let offset = offset
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let zoned: StringArray = text
            .iter()
            .zip(offset.iter())
            .map(|(t, o)| t.and_then(|t| with_offset(t, o)))
            .collect();
        // the cast TRY_CAST(... AS TIMESTAMP) makes: unreadable text becomes NULL
        let options = CastOptions {
            safe: true,
            ..Default::default()
        };
        let out = cast_with_options(&zoned, &TO_UTC_TYPE, &options)?;
        Ok(ColumnarValue::Array(out))
    }
}

/// The text `to_utc` reads: `text` without surrounding spaces, as written when it has a time
/// and ends in an offset, else with `offset` appended; None when empty.
fn with_offset(text: &str, offset: Option<&str>) -> Option<String> {
    let text = text.trim_matches(' ');
    if text.is_empty() {
        return None;
    }
    if has_time(text) && ends_with_offset(text) {
        return Some(text.to_string());
    }
    offset.map(|o| format!("{text}{o}"))
}

/// `hh:mm` somewhere in the text.
fn has_time(text: &str) -> bool {
    let d = |b: u8| b.is_ascii_digit();
    text.as_bytes()
        .windows(5)
        .any(|w| d(w[0]) && d(w[1]) && w[2] == b':' && d(w[3]) && d(w[4]))
}

/// Ends in `Z` (any case), `+hh`, `+hhmm` or `+hh:mm` (or `-`).
fn ends_with_offset(text: &str) -> bool {
    let b = text.as_bytes();
    let d = |i: usize| b[i].is_ascii_digit();
    let sign = |i: usize| b[i] == b'+' || b[i] == b'-';
    let n = b.len();
    matches!(b.last(), Some(b'Z' | b'z'))
        || (n >= 3 && sign(n - 3) && d(n - 2) && d(n - 1))
        || (n >= 5 && sign(n - 5) && d(n - 4) && d(n - 3) && d(n - 2) && d(n - 1))
        || (n >= 6
            && sign(n - 6)
            && d(n - 5)
            && d(n - 4)
            && b[n - 3] == b':'
            && d(n - 2)
            && d(n - 1))
}

/// Tables `a` and `b` of 200,000 rows `(k, v)` each, about 22 MB apiece and equal: a join of
/// the two on both columns outgrows a pool of a few MiB as a hash join.
#[cfg(test)]
pub(crate) async fn create_two_joinable_tables(ctx: &SessionContext) {
    for side in ["a", "b"] {
        ctx.sql(&format!(
            "CREATE TABLE {side} AS SELECT value AS k, repeat('x', 100) || value AS v \
             FROM generate_series(1, 200000)"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    }
}

/// `sql` written to `file` in `dir` and read back as a pipeline file.
#[cfg(test)]
pub(crate) fn write_sql_file(dir: &Path, file: &str, sql: &str) -> SqlFile {
    let path = dir.join(file);
    std::fs::write(&path, sql).unwrap();
    SqlFile::read(&path).unwrap()
}

/// The first column of `batches`, an `Int64` one, in one vector.
#[cfg(test)]
pub(crate) fn first_i64_column(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("an Int64 column")
                .values()
                .to_vec()
        })
        .collect()
}

/// The result of `sql` as a printed table.
#[cfg(test)]
pub(crate) async fn shown(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spilling_operator_gets_at_most_half_of_what_is_free() {
        // Guards bounded memory: a sort must spill while its merge still has room.
        let pool: Arc<dyn MemoryPool> = Arc::new(HeadroomPool::new(100));
        let fixed = MemoryConsumer::new("hash table").register(&pool);
        fixed.try_grow(40).unwrap();
        let sort = MemoryConsumer::new("sort")
            .with_can_spill(true)
            .register(&pool);
        assert!(sort.try_grow(31).is_err());
        sort.try_grow(30).unwrap();
        fixed.shrink(40);
        sort.try_grow(20).unwrap();
        assert!(sort.try_grow(1).is_err());
        assert_eq!(pool.reserved(), 50);
    }

    async fn run_with_limit(limit: usize) -> (Option<PathBuf>, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = write_sql_file(
            dir.path(),
            "01_numbers.sql",
            "-- numbers\nSELECT x, 'row ' || x AS label FROM unnest(range(1, 1001)) AS t(x)\n",
        );
        let ctx = bounded_session(64 << 20, dir.path()).unwrap();
        let spill = dir.path().join("numbers.parquet");
        let result = file
            .run_into(&ctx, &file.name, &spill, limit)
            .await
            .unwrap();
        let shown = shown(&ctx, "SELECT count(*), sum(x), max(label) FROM numbers").await;
        (result, shown, dir)
    }

    /// `to_utc(t, o)` and the expression `other` over rows `(t, o)`, each value as text.
    async fn to_utc_rows(
        cases: &[(Option<&str>, Option<&str>)],
        other: &str,
    ) -> Vec<(Option<String>, Option<String>)> {
        let lit = |v: Option<&str>| match v {
            Some(v) => format!("'{}'", v.replace('\'', "''")),
            None => "CAST(NULL AS VARCHAR)".into(),
        };
        let rows = cases
            .iter()
            .enumerate()
            .map(|(i, (t, o))| format!("({i}, {}, {})", lit(*t), lit(*o)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT CAST(to_utc(t, o) AS VARCHAR), CAST({other} AS VARCHAR) \
             FROM (VALUES {rows}) AS v(i, t, o) ORDER BY i"
        );
        let batches = session().sql(&sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let o = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            for r in 0..b.num_rows() {
                let v = |s: &StringArray| s.is_valid(r).then(|| s.value(r).to_string());
                out.push((v(a), v(o)));
            }
        }
        assert_eq!(out.len(), cases.len());
        out
    }

    #[tokio::test]
    async fn a_file_is_read_in_order_only_when_its_rows_ascend() {
        // Guards the rejects' order: with the probe sides' order kept, a write sorted by a
        // column declared ascending merges instead of sorting, so a declared order the rows do
        // not have would write them out of order.
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[i64], bool); 3] = [
            ("ascending", &[1, 2, 5, 9, 12], true),
            ("one step down", &[1, 5, 2, 9, 12], false),
            ("a repeat", &[1, 2, 2, 9, 12], false),
        ];
        for (what, rows, declared) in cases {
            let path = dir.path().join("source.parquet");
            let schema = Arc::new(Schema::new(vec![
                Field::new("_source_row", DataType::Int64, false),
                Field::new("v", DataType::Utf8, false),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(arrow::array::Int64Array::from(rows.to_vec())),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| format!("v{r}")),
                    )),
                ],
            )
            .unwrap();
            let mut w =
                parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None)
                    .unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();

            let ctx = session();
            let df = read_in_order(&ctx, &path, "_source_row").await.unwrap();
            let plan = df.clone().create_physical_plan().await.unwrap();
            assert_eq!(
                plan.properties().output_ordering().is_some(),
                declared,
                "{what}"
            );
            ctx.register_table("source", df.into_view()).unwrap();
            ctx.sql("CREATE TABLE judged AS SELECT * FROM (VALUES (12), (2), (9), (5)) AS j(r)")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let query = "SELECT s._source_row, s.v FROM judged AS j \
                         JOIN source AS s ON s._source_row = j.r ORDER BY s._source_row";
            let (plan, batches) = with_probe_order_kept(&ctx, async {
                let df = ctx.sql(query).await?;
                let plan = df.clone().create_physical_plan().await?;
                Ok((plan, df.collect().await?))
            })
            .await
            .unwrap();
            let sorts = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(false)
                .to_string()
                .matches("SortExec")
                .count();
            assert_eq!(
                sorts == 0,
                declared,
                "{what}: a sort only where no order is declared"
            );
            let got = first_i64_column(&batches);
            let mut want: Vec<i64> = rows
                .iter()
                .copied()
                .filter(|r| [12, 2, 9, 5].contains(r))
                .collect();
            want.sort();
            assert_eq!(got, want, "{what}");
        }
    }

    #[tokio::test]
    async fn json_object_with_literal_keys_writes_what_the_map_path_writes() {
        // The literal-key path writes JSON directly; the map path (keys from a column, or a
        // key repeated) is the reference. Both must give the same text, row for row.
        let rows = "('plain', true, 'k'), ('quote \" back\\slash', false, 'k'), \
                    ('tab\tnew\nline ' || chr(1) || ' é ✓ 😀', NULL, 'k'), (NULL, true, 'k')";
        let sql = format!(
            "SELECT json_object('a', a, 'b \"q\"', b, 'c', 7) AS fast, \
                    json_object(k, a, 'b \"q\"', b, 'c', 7) AS by_map, \
                    json_object('a', a, 'a', b) AS repeated \
             FROM (VALUES {rows}) AS v(a, b, k)"
        );
        let batches = session().sql(&sql).await.unwrap().collect().await.unwrap();
        let mut seen = Vec::new();
        for b in &batches {
            let col = |i: usize| b.column(i).as_any().downcast_ref::<StringArray>().unwrap();
            for r in 0..b.num_rows() {
                let by_map = col(1).value(r).replacen("\"k\":", "\"a\":", 1);
                assert_eq!(col(0).value(r), by_map);
                seen.push((col(0).value(r).to_string(), col(2).value(r).to_string()));
            }
        }
        assert_eq!(seen[0].0, r#"{"a":"plain","b \"q\"":true,"c":"7"}"#);
        assert_eq!(
            seen[1].0,
            r#"{"a":"quote \" back\\slash","b \"q\"":false,"c":"7"}"#
        );
        assert_eq!(
            seen[2].0,
            "{\"a\":\"tab\\tnew\\nline \\u0001 é ✓ 😀\",\"b \\\"q\\\"\":null,\"c\":\"7\"}"
        );
        assert_eq!(seen[3].0, r#"{"a":null,"b \"q\"":true,"c":"7"}"#);
        // A repeated key keeps its first place and its last value.
        assert_eq!(seen[0].1, r#"{"a":true}"#);
        assert_eq!(seen[2].1, r#"{"a":null}"#);
    }

    #[tokio::test]
    async fn to_utc_reads_iso_8601_as_utc() {
        let cases = [
            // (text, utc_offset, UTC)
            (
                "2024-03-05T14:22:01+08:00",
                Some("+00:00"),
                Some("2024-03-05T06:22:01"),
            ),
            (
                "2024-03-05T14:22:01-0500",
                Some("+08:00"),
                Some("2024-03-05T19:22:01"),
            ),
            (
                "2024-03-05 14:22:01+08",
                Some("+00:00"),
                Some("2024-03-05T06:22:01"),
            ),
            (
                "2024-03-05T06:22:01Z",
                Some("+08:00"),
                Some("2024-03-05T06:22:01"),
            ),
            (
                "2024-03-05T06:22:01z",
                Some("+08:00"),
                Some("2024-03-05T06:22:01"),
            ),
            (
                "2024-03-05T14:22:01.250+08:00",
                Some("+00:00"),
                Some("2024-03-05T06:22:01.250"),
            ),
            (
                "2024-03-05T06:22:01.123456Z",
                None,
                Some("2024-03-05T06:22:01.123456"),
            ),
            // naive: local time at the offset given
            (
                "2024-03-05 14:22:01",
                Some("+08:00"),
                Some("2024-03-05T06:22:01"),
            ),
            (
                "2024-03-05T14:22:01.5",
                Some("-05:00"),
                Some("2024-03-05T19:22:01.500"),
            ),
            (
                "  2024-03-05 14:22:01  ",
                Some("+08:00"),
                Some("2024-03-05T06:22:01"),
            ),
            // missing or unreadable: NULL
            ("", Some("+08:00"), None),
            ("   ", Some("+08:00"), None),
            ("not a date", Some("+08:00"), None),
            ("2024-13-45 10:00:00", Some("+08:00"), None),
            ("2024-03-05", Some("+08:00"), None),
            ("2024-03-05 14:22:01", None, None),
        ];
        let input: Vec<_> = cases.iter().map(|(t, o, _)| (Some(*t), *o)).collect();
        let got = to_utc_rows(&input, "'-'").await;
        for ((text, offset, want), (got, _)) in cases.iter().zip(got) {
            assert_eq!(got.as_deref(), *want, "to_utc({text:?}, {offset:?})");
        }
        let null = to_utc_rows(&[(None, Some("+08:00"))], "'-'").await;
        assert_eq!(null[0].0, None, "to_utc(NULL, '+08:00')");
    }

    #[tokio::test]
    async fn to_utc_gives_what_the_sql_it_replaced_gave() {
        // Guards the payments' and contacts' timestamps and reject reasons: to_utc replaced
        // this CASE in pipeline/transform and must give the same value for every text.
        let old = "CASE \
            WHEN nullif(trim(t), '') IS NULL THEN NULL \
            WHEN regexp_like(trim(t), '(Z|[+-][0-9]{2}(:?[0-9]{2})?)$', 'i') \
                AND regexp_like(trim(t), '[0-9]{2}:[0-9]{2}') \
                THEN TRY_CAST(trim(t) AS TIMESTAMP) \
            ELSE TRY_CAST(trim(t) || o AS TIMESTAMP) END";
        let texts = [
            "2024-03-05T14:22:01+08:00",
            "2024-03-05T14:22:01.250+08:00",
            "2024-03-05T14:22:01.123456789-03:30",
            "2024-03-05 14:22:01+0800",
            "2024-03-05 14:22:01+08",
            "2024-03-05 14:22:01-8",
            "2024-03-05 14:22:01 +08:00",
            "2024-03-05T14:22:01Z",
            "2024-03-05t14:22:01z",
            "2024-03-05 14:22:01",
            "2024-03-05 14:22",
            "2024-03-05T14:22:01.5",
            "2024-03-05 14",
            "2024-03-05",
            "2024-03-05Z",
            "2024-03-05+08:00",
            "2024-03-05-08",
            "2024/03/05 14:22:01",
            "05/03/2024 14:22",
            "2024-02-30 10:00:00",
            "2024-03-05 25:00:00",
            "1500-01-01 00:00:00",
            "2024-03-05 14:22:01 PHT",
            "2024-03-05 14:22:01 UTC",
            "2024-03-05 14:22:01Asia/Manila",
            "14:22",
            "Z",
            "+08:00",
            " ",
            "",
            "\t2024-03-05 14:22:01",
            "2024-03-05 14:22:01\n",
            "garbage",
            "ñ2024-03-05 14:22:01",
        ];
        let offsets = [
            Some("+08:00"),
            Some("-05:00"),
            Some("+00:00"),
            Some("+0800"),
            Some("Z"),
            Some("Asia/Manila"),
            Some(""),
            Some("nonsense"),
            None,
        ];
        let mut cases: Vec<(Option<&str>, Option<&str>)> = Vec::new();
        for t in texts {
            for o in offsets {
                cases.push((Some(t), o));
            }
        }
        cases.push((None, Some("+08:00")));
        let rows = to_utc_rows(&cases, old).await;
        let mut read = 0;
        for ((text, offset), (new, old)) in cases.iter().zip(&rows) {
            assert_eq!(new, old, "to_utc({text:?}, {offset:?})");
            read += usize::from(new.is_some());
        }
        assert!(read > 40, "only {read} texts were read");
    }

    #[tokio::test]
    async fn a_result_over_the_in_memory_limit_is_read_back_from_a_private_file() {
        // Guards bounded memory: large intermediate results live on disk, readable by the
        // owner only, and later statements see exactly the same rows.
        let (small, in_memory, _d1) = run_with_limit(usize::MAX).await;
        assert_eq!(small, None);
        let (large, on_disk, _d2) = run_with_limit(0).await;
        let path = large.expect("a scratch file");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(in_memory, on_disk);
        assert!(on_disk.contains("500500"), "{on_disk}");
    }

    #[test]
    fn ids_are_uuid_v5_in_a_fixed_namespace() {
        // Guards the ids of every new profile, transaction and enrollment: changing the
        // namespace would give every re-run different ids.
        assert_eq!(
            id_namespace().to_string(),
            "0a659f84-839a-52dc-8b2e-ac0b08b20336"
        );
        assert_eq!(
            uuid::Uuid::new_v5(&id_namespace(), b"gina@example.com").to_string(),
            "eac2590e-8f87-5d69-98e5-18646a5ad15d"
        );
    }

    #[test]
    fn sql_file_names_and_headers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("07_auth_users.sql");
        std::fs::write(
            &path,
            "-- The new logins: one per profile.\n-- generated: confirmed_at\n-- severity: warning\nSELECT 1\n",
        )
        .unwrap();
        let f = SqlFile::read(&path).unwrap();
        assert_eq!(f.name, "auth_users");
        assert_eq!(f.description, "The new logins: one per profile.");
        assert_eq!(f.headers["generated"], "confirmed_at");
        assert_eq!(f.headers["severity"], "warning");
        let plain = dir.path().join("checks_x.sql");
        std::fs::write(
            &plain,
            "-- Customers: a description with a colon\nSELECT 1\n",
        )
        .unwrap();
        let f = SqlFile::read(&plain).unwrap();
        assert_eq!(f.name, "checks_x");
        assert_eq!(f.description, "Customers: a description with a colon");
    }

    fn one_column(name: &str, values: ArrayRef, id: bool) -> RecordBatch {
        let mut fields = vec![Field::new(name, values.data_type().clone(), true)];
        let mut columns = vec![values.clone()];
        if id {
            fields.push(Field::new("id", DataType::Utf8, false));
            let ids: Vec<String> = (1..=values.len()).map(|i| format!("id-{i}")).collect();
            columns.push(Arc::new(StringArray::from(ids)));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    fn conform_to(batch: &RecordBatch, to: DataType) -> std::result::Result<RecordBatch, String> {
        let mut fields = vec![Field::new("n", to, true)];
        if batch.schema().index_of("id").is_ok() {
            fields.push(Field::new("id", DataType::Utf8, false));
        }
        conform(
            batch,
            &Schema::new(fields),
            &[],
            Path::new("pipeline/transform/05_things.sql"),
        )
        .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn a_value_that_does_not_convert_is_an_error_not_a_null() {
        // Regression: arrow's cast made 'abc' for an integer column a silent NULL.
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("1"), None, Some("abc")]));
        let err = conform_to(&one_column("n", text.clone(), true), DataType::Int32).unwrap_err();
        assert!(
            err.contains("05_things.sql: output `things`, column `n`, the row with id 'id-3': value 'abc' (Utf8) does not convert to Int32"),
            "{err}"
        );
        let err = conform_to(&one_column("n", text, false), DataType::Int32).unwrap_err();
        assert!(err.contains("row 3 of a result batch"), "{err}");

        let big: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 70_000]));
        let err = conform_to(&one_column("n", big, true), DataType::Int16).unwrap_err();
        assert!(err.contains("id 'id-2': value 70000 (Int64)"), "{err}");

        let fraction: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![2.0, 2.5]));
        let err = conform_to(&one_column("n", fraction, true), DataType::Int64).unwrap_err();
        assert!(err.contains("id 'id-2': value 2.5 (Float64)"), "{err}");

        // What converts, converts; NULLs stay NULLs.
        let fine: ArrayRef = Arc::new(StringArray::from(vec![Some("7"), None]));
        let out = conform_to(&one_column("n", fine, true), DataType::Int32).unwrap();
        assert_eq!(out.column(0).null_count(), 1);
    }

    #[tokio::test]
    async fn a_write_sorted_by_its_leading_columns_gives_the_bytes_of_one_sorted_by_every_column() {
        // Guards byte-identical re-runs: the prefix sort must never change a file's bytes.
        let ctx = session();
        // Batches of two rows, so that ties across batch boundaries are looked for too.
        ctx.sql("SET datafusion.execution.batch_size = 2")
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plain = |b: &RecordBatch| Ok(b.clone());
        let unique = "SELECT * FROM (VALUES ('b', 2, 'x'), ('a', 9, 'y'), (NULL, 1, 'z'), \
                      ('a', 1, 'w'), ('b', NULL, 'v')) AS t(a, b, c)";
        // ('a', 1) and (NULL, NULL) each twice, their third column in descending order.
        let tied = "SELECT * FROM (VALUES ('a', 1, 'z'), ('b', 2, 'x'), ('a', 1, 'c'), \
                    (NULL, NULL, 'q'), ('c', 0, 'm'), (NULL, NULL, 'p')) AS t(a, b, c)";
        for (name, query, ties) in [("unique", unique, false), ("tied", tied, true)] {
            let by_prefix = dir.path().join(format!("{name}_prefix.parquet"));
            let by_all = dir.path().join(format!("{name}_all.parquet"));
            let prefix_only =
                write_sorted_by(&ctx, query, &by_prefix, &plain, name, Some(SORT_PREFIX))
                    .await
                    .unwrap();
            assert_eq!(prefix_only.is_none(), ties, "{name}");
            write_sorted(&ctx, query, &by_prefix, &plain, name)
                .await
                .unwrap();
            write_sorted_by(&ctx, query, &by_all, &plain, name, None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                std::fs::read(&by_prefix).unwrap(),
                std::fs::read(&by_all).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn sorting_makes_row_order_irrelevant() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true)]));
        let a = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![
                Some("b"),
                None,
                Some("a"),
            ]))],
        )
        .unwrap();
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                None,
            ]))],
        )
        .unwrap();
        assert_eq!(sort_all_columns(&a).unwrap(), sort_all_columns(&b).unwrap());
    }

    #[tokio::test]
    async fn a_file_whose_hash_join_outgrows_the_pool_runs_again_with_sort_merge_joins() {
        // Guards bounded memory for every SQL file the transform runs (checks, report, review
        // page), not only its rules: a hash join cannot spill, a sort-merge join can.
        let dir = tempfile::tempdir().unwrap();
        let ctx = bounded_session(8 << 20, dir.path()).unwrap();
        create_two_joinable_tables(&ctx).await;
        let file = write_sql_file(
            dir.path(),
            "01_joined.sql",
            "-- joined\nSELECT count(*) AS n FROM a JOIN b ON a.k = b.k AND a.v = b.v\n",
        );
        let first = file.run_inner(&ctx).await.unwrap_err();
        assert!(is_memory_exhausted(&first), "{first:#}");
        let batch = file.run(&ctx).await.unwrap();
        let n = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert_eq!(n.value(0), 200_000);
        let hash_joins: bool = ctx.state().config().options().optimizer.prefer_hash_join;
        assert!(
            hash_joins,
            "hash joins are the first choice again afterwards"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_side_by_side_keep_their_order_and_one_that_outgrows_the_pool_runs_again_alone()
    {
        // Guards the checks, report and review page, which run their files side by side: the
        // results come in the files' order whichever finishes first, and a file that exhausts
        // the shared pool is not an error while it can finish alone with spilling joins.
        let dir = tempfile::tempdir().unwrap();
        let ctx = bounded_session(8 << 20, dir.path()).unwrap();
        create_two_joinable_tables(&ctx).await;
        let joined = "SELECT count(*) AS n FROM a JOIN b ON a.k = b.k AND a.v = b.v";
        let files: Vec<SqlFile> = [
            // the first takes longest, so the next ones finish before it
            "SELECT count(DISTINCT v) AS n FROM a WHERE k % 2 = 0",
            "SELECT CAST(7 AS BIGINT) AS n",
            joined,
            "SELECT count(*) AS n FROM b WHERE k <= 3",
        ]
        .iter()
        .enumerate()
        .map(|(i, sql)| write_sql_file(dir.path(), &format!("{i:02}_q.sql"), sql))
        .collect();
        let first = files[2].run_once(&ctx).await.unwrap_err();
        assert!(is_memory_exhausted(&first), "{first:#}");

        let counts = side_by_side(
            &ctx,
            files,
            |f| f.path.display().to_string(),
            |ctx, f| async move {
                let batch = f.run_once(&ctx).await?;
                let n = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .context("a count")?
                    .value(0);
                Ok(n)
            },
        )
        .await
        .unwrap();
        assert_eq!(counts, vec![100_000, 7, 200_000, 3]);
        let hash_joins: bool = ctx.state().config().options().optimizer.prefer_hash_join;
        assert!(
            hash_joins,
            "hash joins are the first choice again afterwards"
        );
    }

    #[tokio::test]
    async fn a_sort_merges_its_spill_files_in_passes_of_at_most_the_fan_in() {
        // Guards bounded memory: a merge reserves a buffer per spill file and cannot spill, so
        // a sort that spilled many files must merge them a few at a time.
        async fn sort(fan_in: usize) -> Result<Vec<RecordBatch>> {
            let dir = tempfile::tempdir().unwrap();
            let ctx = bounded_session_merging(8 << 20, dir.path(), fan_in).unwrap();
            ctx.sql(
                "CREATE TABLE big AS SELECT value AS k, \
                   repeat('x', 100) || (value * 7919 % 1000003) AS v \
                 FROM generate_series(1, 1000000)",
            )
            .await?
            .collect()
            .await?;
            Ok(ctx
                .sql("SELECT v FROM big ORDER BY v")
                .await?
                .collect()
                .await?)
        }
        let unbounded = sort(usize::MAX).await.map(|_| ());
        assert!(
            unbounded.as_ref().is_err_and(is_memory_exhausted),
            "the sort no longer needs the fan-in to fit the pool: {unbounded:?}"
        );
        let sorted = sort(SPILL_MERGE_FAN_IN).await.unwrap();
        let values: Vec<String> = sorted
            .iter()
            .flat_map(|b| {
                let v = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                v.iter().map(|s| s.unwrap().to_string()).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(values.len(), 1_000_000);
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
    }
}
