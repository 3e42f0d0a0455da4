//! Extract: stream the sources and the current destination tables into Parquet.
//!
//! Everything is read inside one `REPEATABLE READ` snapshot, with binary `COPY ... TO STDOUT`
//! decoded straight into Arrow batches, so memory stays flat whatever the table size. The source
//! tables (`xendit`, `systemeio`) come out in canonical form whatever their shape: columns are
//! matched to canonical names through `pipeline/source_columns.csv` and every value is text,
//! exactly as Postgres prints it (parsing is a business rule, done by the pipeline SQL).
//! Destination tables keep their types (see [`crate::pg_arrow`]).

use crate::artifacts::{
    self, ArtifactEntry, Manifest, ParquetArtifact, RowHashes, TableEntry, EXTRACT_DIR,
};
use crate::catalog::{self, read_source_columns, CanonicalColumn, Catalog};
use crate::connect::ConnInfo;
use crate::error::Refusal;
use crate::fingerprint::{self, Coverage, TableFingerprint};
use crate::pg::Tx;
use crate::pg_arrow::{self, CopyDecoder, Kind, PgColumn, SOURCE_NAME_KEY};
use crate::sql::{ident as quote_ident, qualified as qualify};
use anyhow::{bail, Context, Result};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio_postgres::{IsolationLevel, Transaction};

/// What `cleanmig extract` reads and where it writes.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub artifacts: PathBuf,
    /// The pipeline folder: `source_columns.csv` names the sources, the catalogue the
    /// destination tables.
    pub pipeline: PathBuf,
    pub conn: ConnInfo,
    /// Progress bars on stderr.
    pub progress: bool,
}

/// Schema of the trusted source tables (their names come from `source_columns.csv`).
const SOURCE_SCHEMA: &str = "public";

#[tracing::instrument(name = "extract", skip_all)]
pub async fn run(opts: &ExtractOptions) -> Result<Manifest> {
    tracing::info!(
        "extract from {} (settings from {})",
        opts.conn,
        opts.conn.source
    );
    extract(&opts.conn, &opts.artifacts, &opts.pipeline, opts.progress).await
}

/// Column names are matched without regard to case, spacing or punctuation.
pub fn normalize_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A snake_case name for an extra source column (`"Promo Code"` -> `promo_code`).
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_string();
    if out.is_empty() {
        "column".into()
    } else {
        out
    }
}

/// What to select from a table and how to type it.
#[derive(Debug)]
struct TablePlan {
    qualified: String,
    artifact: String,
    role: &'static str,
    key_columns: Vec<String>,
    coverage: Coverage,
    /// The columns its fingerprint hashes: every column (sources) or the key columns.
    fingerprinted: Vec<PgColumn>,
    /// Where each of `fingerprinted` is in the copied rows.
    fingerprinted_at: Vec<usize>,
    /// Whether the server encodes text as UTF-8 (set once every table is planned).
    server_utf8: bool,
    select: Vec<String>,
    kinds: Vec<Kind>,
    fields: Vec<Field>,
    with_row_numbers: bool,
    notes: Vec<String>,
    /// Set when this plan copies a reconciled table's row hashes rather than its rows.
    row_hashes: Option<RowHashes>,
    /// A typed table with numeric columns whose Arrow type depends on the values they hold:
    /// its columns, profiled and typed when its copy starts, on whichever connection takes
    /// it and beside the other copies. `select`, `kinds`, `fields` and `notes` are empty.
    typed_at_copy: Option<Vec<PgColumn>>,
}

impl TablePlan {
    /// Whether the table's copy computes its fingerprint ([`fingerprint::RowSum`]): over
    /// columns the client hashes as Postgres does, so the server need not read the table again.
    fn summed_by_copy(&self) -> bool {
        self.row_hashes.is_none()
            && fingerprint::RowSum::covers(&self.fingerprinted, self.server_utf8)
    }
}

/// Map a source table's columns onto its canonical columns.
fn plan_source(
    schema: &str,
    table: &str,
    columns: &[PgColumn],
    canonical: &[CanonicalColumn],
) -> Result<TablePlan> {
    let qualified = qualify(schema, table);
    let mut used = vec![false; columns.len()];
    let mut select = Vec::new();
    let mut fields = vec![Field::new("_source_row", DataType::Int64, false)];
    let mut notes = Vec::new();
    // Where each source column lands in the copied rows, for its fingerprint.
    let mut copied_at = vec![0; columns.len()];
    for canon in canonical {
        let (expr, field, matched) = select_canonical(schema, table, columns, canon, &mut notes)?;
        if let Some(i) = matched {
            used[i] = true;
            copied_at[i] = fields.len();
        }
        select.push(expr);
        fields.push(field);
    }
    let mut taken: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
    for (i, col) in columns.iter().enumerate() {
        if used[i] {
            continue;
        }
        let mut name = snake_case(&col.name);
        while taken.contains(&name) {
            name.push_str("_extra");
        }
        taken.push(name.clone());
        select.push(format!(
            "{}::text AS {}",
            quote_ident(&col.name),
            quote_ident(&name)
        ));
        let mut meta = HashMap::new();
        meta.insert(pg_arrow::PG_TYPE_KEY.to_string(), col.type_name.clone());
        meta.insert(SOURCE_NAME_KEY.to_string(), col.name.clone());
        notes.push(format!("extra column \"{}\" kept as {name}", col.name));
        copied_at[i] = fields.len();
        fields.push(Field::new(&name, DataType::Utf8, true).with_metadata(meta));
    }
    let kinds = vec![Kind::Text; select.len()];
    Ok(TablePlan {
        qualified,
        artifact: table.to_string(),
        role: "source",
        key_columns: Vec::new(),
        coverage: Coverage::WholeRow,
        fingerprinted: columns.to_vec(),
        fingerprinted_at: copied_at,
        server_utf8: false,
        select,
        kinds,
        fields,
        with_row_numbers: true,
        notes,
        row_hashes: None,
        typed_at_copy: None,
    })
}

/// The select expression and field of one canonical column: the one source column that
/// matches it (noted when renamed; its index is returned), or NULL when it is optional and
/// absent.
fn select_canonical(
    schema: &str,
    table: &str,
    columns: &[PgColumn],
    canon: &CanonicalColumn,
    notes: &mut Vec<String>,
) -> Result<(String, Field, Option<usize>)> {
    let accepted: Vec<String> = std::iter::once(canon.name.as_str())
        .chain(canon.aliases.iter().map(String::as_str))
        .map(normalize_name)
        .collect();
    let matches: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| accepted.contains(&normalize_name(&c.name)))
        .map(|(i, _)| i)
        .collect();
    let mut meta = HashMap::new();
    let expr = match matches.as_slice() {
        [] => {
            if canon.required {
                return Err(Refusal::MissingColumn {
                    table: format!("{schema}.{table}"),
                    column: canon.name.clone(),
                    accepted: std::iter::once(&canon.name)
                        .chain(&canon.aliases)
                        .map(|a| format!("\"{a}\""))
                        .collect::<Vec<_>>()
                        .join(", "),
                    found: columns
                        .iter()
                        .map(|c| format!("\"{}\"", c.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
                .into());
            }
            meta.insert(pg_arrow::PG_TYPE_KEY.to_string(), "missing".to_string());
            format!("NULL::text AS {}", quote_ident(&canon.name))
        }
        [i] => {
            let col = &columns[*i];
            meta.insert(pg_arrow::PG_TYPE_KEY.to_string(), col.type_name.clone());
            if col.name != canon.name {
                meta.insert(SOURCE_NAME_KEY.to_string(), col.name.clone());
                notes.push(format!("column \"{}\" read as {}", col.name, canon.name));
            }
            format!(
                "{}::text AS {}",
                quote_ident(&col.name),
                quote_ident(&canon.name)
            )
        }
        many => bail!(
            "table {schema}.{table}: columns {} all match `{}`; rename or drop one of them",
            many.iter()
                .map(|i| format!("\"{}\"", columns[*i].name))
                .collect::<Vec<_>>()
                .join(" and "),
            canon.name
        ),
    };
    Ok((
        expr,
        Field::new(&canon.name, DataType::Utf8, true).with_metadata(meta),
        matches.first().copied(),
    ))
}

/// Destination and dependent tables keep their columns and types. `key_columns`: the columns
/// whose values are fingerprinted (the catalogue's drift key for destination tables, the
/// primary key for the others, every column when there is none).
fn plan_typed(
    schema: &str,
    table: &str,
    role: &'static str,
    columns: &[PgColumn],
    key_columns: Vec<String>,
) -> Result<TablePlan> {
    let qualified = qualify(schema, table);
    let typed_at_copy = columns
        .iter()
        .any(pg_arrow::numeric_needs_profile)
        .then(|| columns.to_vec());
    let Typed {
        select,
        kinds,
        fields,
        notes,
    } = match typed_at_copy {
        Some(_) => Typed::default(),
        None => typed_columns(columns, &HashMap::new()),
    };
    let key_columns = if key_columns.is_empty() {
        columns.iter().map(|c| c.name.clone()).collect()
    } else {
        key_columns
    };
    let fingerprinted =
        fingerprint::chosen_columns(columns, &qualified, Coverage::Keys, &key_columns)?;
    // Every column is copied, in table order.
    let fingerprinted_at = fingerprinted
        .iter()
        .map(|f| {
            columns
                .iter()
                .position(|c| c.name == f.name)
                .unwrap_or(usize::MAX)
        })
        .collect();
    Ok(TablePlan {
        qualified,
        artifact: catalog::extract_artifact_name(schema, table),
        role,
        key_columns,
        coverage: Coverage::Keys,
        fingerprinted,
        fingerprinted_at,
        server_utf8: false,
        select,
        kinds,
        fields,
        with_row_numbers: false,
        notes,
        row_hashes: None,
        typed_at_copy,
    })
}

/// How the columns of a typed table are selected and typed.
#[derive(Debug, Default)]
struct Typed {
    select: Vec<String>,
    kinds: Vec<Kind>,
    fields: Vec<Field>,
    notes: Vec<String>,
}

/// `profiles`: what [`numeric_profiles`] found, by column name.
fn typed_columns(columns: &[PgColumn], profiles: &HashMap<String, (i32, i32, bool)>) -> Typed {
    let mut typed = Typed::default();
    for col in columns {
        let (kind, expr) = typed_column(col, profiles.get(&col.name).copied(), &mut typed.notes);
        typed.fields.push(pg_arrow::field(
            &col.name,
            &kind,
            &col.type_name,
            !col.not_null,
        ));
        typed.kinds.push(kind);
        typed.select.push(expr);
    }
    typed
}

/// The key and row hash of every row of a reconciled table, over the columns a load may
/// overwrite ([`RowHashes`]).
fn plan_row_hashes(table: &catalog::Table, columns: &[PgColumn]) -> Result<TablePlan> {
    let qualified = table.qualified();
    let key = columns
        .iter()
        .find(|c| c.name == table.key)
        .with_context(|| format!("{} has no key column {}", table.display(), table.key))?;
    let hashed: Vec<PgColumn> = columns
        .iter()
        .filter(|c| !c.generated && table.may_overwrite(&c.name))
        .cloned()
        .collect();
    let (key_kind, key_expr) = pg_arrow::extract_kind(key);
    let artifact = artifacts::row_hashes_artifact(&table.extract_artifact());
    Ok(TablePlan {
        qualified,
        artifact: artifact.clone(),
        role: "row_hashes",
        key_columns: vec![table.key.clone()],
        coverage: Coverage::Keys,
        fingerprinted: Vec::new(),
        fingerprinted_at: Vec::new(),
        server_utf8: false,
        select: vec![key_expr, fingerprint::row_hash(&hashed)],
        fields: vec![
            pg_arrow::field(&key.name, &key_kind, &key.type_name, !key.not_null),
            pg_arrow::field(artifacts::ROW_HASH_COLUMN, &Kind::Int64, "bigint", false),
        ],
        kinds: vec![key_kind, Kind::Int64],
        with_row_numbers: false,
        notes: Vec::new(),
        row_hashes: Some(RowHashes {
            artifact,
            key: table.key.clone(),
            columns: hashed.into_iter().map(|c| c.name).collect(),
        }),
        typed_at_copy: None,
    })
}

/// (largest scale, most integer digits, any NaN/Infinity) of each numeric column to profile
/// ([`pg_arrow::numeric_needs_profile`]), by column name: one scan of the table for all.
async fn numeric_profiles(
    txn: &Transaction<'_>,
    qualified: &str,
    columns: &[PgColumn],
) -> Result<HashMap<String, (i32, i32, bool)>> {
    let unprofiled: Vec<&str> = columns
        .iter()
        .filter(|c| pg_arrow::numeric_needs_profile(c))
        .map(|c| c.name.as_str())
        .collect();
    if unprofiled.is_empty() {
        return Ok(HashMap::new());
    }
    let row = crate::pg::query_one(
        txn,
        &pg_arrow::numeric_profile_sql(qualified, &unprofiled),
        &[],
        &[],
    )
    .await
    .with_context(|| format!("cannot inspect the numeric columns of {qualified}"))?;
    Ok(unprofiled
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let found = (row.get(3 * i), row.get(3 * i + 1), row.get(3 * i + 2));
            (name.to_string(), found)
        })
        .collect())
}

/// How one column of a typed table is extracted: its kind and select expression. `profile`:
/// what [`numeric_profiles`] found, for a numeric column whose declared precision (if any)
/// DECIMAL(38) does not hold. Anything written as text is noted.
fn typed_column(
    col: &PgColumn,
    profile: Option<(i32, i32, bool)>,
    notes: &mut Vec<String>,
) -> (Kind, String) {
    let (kind, expr) = if col.typname == "numeric" && col.category != 'A' {
        let kind = pg_arrow::numeric_kind(col.typmod, profile);
        let expr = match kind {
            Kind::Text => {
                let why = if profile.is_some_and(|(_, _, special)| special) {
                    "holds NaN or Infinity, which DECIMAL cannot"
                } else {
                    "does not fit DECIMAL(38)"
                };
                notes.push(format!(
                    "numeric column {} {why}; written as text",
                    col.name
                ));
                format!("{}::text", quote_ident(&col.name))
            }
            _ => quote_ident(&col.name),
        };
        (kind, expr)
    } else {
        pg_arrow::extract_kind(col)
    };
    if kind == Kind::Text
        && !matches!(
            col.typname.as_str(),
            "text" | "varchar" | "bpchar" | "name" | "json" | "numeric"
        )
    {
        notes.push(format!(
            "column {} ({}) written as text",
            col.name, col.type_name
        ));
    }
    (kind, expr)
}

/// Primary-key columns of each table, in column order (empty for a table without one).
async fn primary_keys(txn: &Transaction<'_>, qualified: &[String]) -> Result<Vec<Vec<String>>> {
    let rows = crate::pg::query(
        txn,
        "SELECT u.n::int4, a.attname::text \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) \
         JOIN pg_index i ON i.indrelid = to_regclass(u.t) AND i.indisprimary \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         ORDER BY u.n, a.attnum",
        &[&qualified],
        &[tokio_postgres::types::Type::TEXT_ARRAY],
    )
    .await
    .context("cannot read the primary keys of the dependent tables")?;
    let mut keys = vec![Vec::new(); qualified.len()];
    for r in rows {
        keys[r.get::<_, i32>(0) as usize - 1].push(r.get(1));
    }
    Ok(keys)
}

/// Extract every table into `artifacts/extract/` and write its manifest.
pub async fn extract(
    conn: &ConnInfo,
    artifacts_dir: &Path,
    pipeline_dir: &Path,
    progress: bool,
) -> Result<Manifest> {
    let catalog = Catalog::read(pipeline_dir)?;
    // The second connection connects while the first plans.
    let second = AbortOnDrop::spawn({
        let conn = conn.clone();
        async move { conn.connect().await }
    });
    let mut client = conn.connect().await?;
    let txn = snapshot_transaction(&mut client, None).await?;
    let row = crate::pg::query_one(
        &*txn,
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                current_setting('server_encoding') = 'UTF8'",
        &[],
        &[],
    )
    .await?;
    let (extracted_at, server_utf8): (String, bool) = (row.get(0), row.get(1));
    let mut plans = plan_tables(&txn, pipeline_dir, &catalog).await?;
    for plan in &mut plans {
        plan.server_utf8 = server_utf8;
    }

    // Write into a fresh directory, then swap it in: a failed run leaves the last good extract.
    artifacts::create_private_dir(artifacts_dir)?;
    let tmp_dir = artifacts_dir.join(format!(".{EXTRACT_DIR}.tmp-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(tmp_dir.clone());
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir)?;
    }
    artifacts::create_private_dir(&tmp_dir)?;
    let (plans, fingerprints, copies) =
        copy_and_fingerprint(second, &txn, plans, &tmp_dir, progress).await?;
    txn.commit().await?;

    let mut manifest = manifest_of(plans, fingerprints, copies)?;
    manifest.extracted_at = extracted_at;
    manifest.source = Some(conn.to_string());
    manifest.catalog = Some(catalog);
    manifest.write(&tmp_dir)?;
    swap_dir(&tmp_dir, &artifacts_dir.join(EXTRACT_DIR))?;
    let total: u64 = manifest.tables.values().map(|t| t.fingerprint.rows).sum();
    tracing::info!(
        "extract: {} tables, {} rows, fingerprint {}",
        manifest.tables.len(),
        artifacts::human_count(total),
        &manifest.fingerprint[..12]
    );
    Ok(manifest)
}

/// What to read: the sources named in `source_columns.csv`, the catalogue's tables, and every
/// other table with a foreign key to a reconciled table (its dependents). The catalogue
/// queries are few and cover every table at once: at small scale their round trips are a
/// good part of the extract.
async fn plan_tables(
    txn: &Transaction<'_>,
    pipeline_dir: &Path,
    catalog: &Catalog,
) -> Result<Vec<TablePlan>> {
    let canonical = read_source_columns(pipeline_dir)?;
    let dependents: Vec<(String, String)> = crate::pg::query(
        txn,
        "SELECT DISTINCT n.nspname::text, c.relname::text \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype = 'f' \
           AND k.confrelid = ANY (ARRAY(SELECT to_regclass(t) FROM unnest($1::text[]) AS t)) \
         ORDER BY 1, 2",
        &[&catalog
            .reconciled()
            .map(|t| t.qualified())
            .collect::<Vec<_>>()],
        &[tokio_postgres::types::Type::TEXT_ARRAY],
    )
    .await
    .context("cannot list the tables that reference the destination tables")?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .filter(|(schema, table)| catalog.get(&format!("{schema}.{table}")).is_none())
    .collect();

    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    for table in canonical.keys() {
        wanted.push((SOURCE_SCHEMA, table, "source"));
    }
    for t in &catalog.tables {
        wanted.push((&t.schema, &t.name, "destination"));
    }
    for (schema, table) in &dependents {
        wanted.push((schema, table, "dependent"));
    }
    let names: Vec<String> = wanted.iter().map(|(s, t, _)| qualify(s, t)).collect();
    let mut columns = Vec::new();
    for ((schema, table, what), found) in wanted
        .iter()
        .zip(pg_arrow::tables_columns(txn, &names).await?)
    {
        match found {
            Some(c) => columns.push(c),
            None => bail!("{what} table {schema}.{table} does not exist in this database"),
        }
    }
    let mut columns = columns.into_iter();
    let mut next_columns = || columns.next().context("a table's columns are missing");

    let mut plans = Vec::new();
    for (table, canon) in &canonical {
        plans.push(plan_source(SOURCE_SCHEMA, table, &next_columns()?, canon)?);
    }
    for t in &catalog.tables {
        let cols = next_columns()?;
        plans.push(plan_typed(
            &t.schema,
            &t.name,
            "destination",
            &cols,
            t.drift_key.clone(),
        )?);
        if t.is_reconciled() {
            plans.push(plan_row_hashes(t, &cols)?);
        }
    }
    let dependent_names: Vec<String> = dependents.iter().map(|(s, t)| qualify(s, t)).collect();
    let keys = primary_keys(txn, &dependent_names).await?;
    for ((schema, table), key) in dependents.iter().zip(keys) {
        let cols = next_columns()?;
        plans.push(plan_typed(schema, table, "dependent", &cols, key)?);
    }
    Ok(plans)
}

/// A task aborted when dropped unjoined: the second connection of an extract that fails
/// before it needs it closes at once.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    fn spawn(task: impl std::future::Future<Output = T> + Send + 'static) -> Self
    where
        T: Send + 'static,
    {
        Self(Some(tokio::spawn(task)))
    }

    async fn join(mut self) -> Result<T> {
        let handle = self.0.take().context("a task joined twice")?;
        handle
            .await
            .map_err(|e| anyhow::anyhow!("the extract's second connection panicked: {e}"))
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// A `REPEATABLE READ, READ ONLY` transaction: one snapshot for everything read in it; the
/// snapshot `shared` names (exported by the first connection), or its own.
///
/// Its scans start at a table's first page: with `synchronize_seqscans` on (the server's
/// default), a scan of a table larger than a quarter of `shared_buffers` starts where another
/// scan of it is, or where the last one stopped (a `LIMIT` query, a cancelled report, this
/// extract's other connection), and two extracts of one unchanged table would write its rows
/// in different orders.
async fn snapshot_transaction<'a>(
    client: &'a mut tokio_postgres::Client,
    shared: Option<&str>,
) -> Result<Tx<'a>> {
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .context("cannot start the snapshot transaction")?;
    let mut settings = String::new();
    if let Some(snapshot) = shared {
        settings = format!(
            "SET TRANSACTION SNAPSHOT {}; ",
            crate::sql::literal(snapshot)
        );
    }
    settings.push_str("SET LOCAL synchronize_seqscans = off");
    txn.batch_execute(&settings)
        .await
        .with_context(|| match shared {
            Some(_) => "cannot share the snapshot with the extract's second connection",
            None => "cannot set up the snapshot transaction",
        })?;
    Ok(Tx::new(txn))
}

/// One piece of the extract's work, on either of its two connections.
#[derive(Debug, Clone, Copy)]
enum Job {
    Copy(usize),
    Fingerprint(usize),
}

/// What a job produced.
enum Done {
    Copy(usize, Written),
    Fingerprint(usize, TableFingerprint),
}

/// The work both connections take from: every copy, largest table first, then every
/// fingerprint. A table's copy and its fingerprint may run on different connections; both see
/// the one snapshot.
struct Jobs(std::sync::Mutex<std::collections::VecDeque<Job>>);

impl Jobs {
    fn next(&self) -> Option<Job> {
        self.0.lock().expect("job queue lock").pop_front()
    }
}

/// Copy and fingerprint every table into `dir` on two connections that share the snapshot: the
/// one that exported it and a second one, as `pg_dump -j` does. Two, not more: each holds a
/// server connection for the whole extract, and a pooler may have no more to give (the
/// fingerprints needed the second one already). Each connection decodes on its own task (both
/// tasks on the runtime's one thread, see [`crate::run`]) and encodes on a thread of its own, so
/// the extract's client work spreads over the cores the server's COPY leaves.
async fn copy_and_fingerprint(
    second: AbortOnDrop<Result<tokio_postgres::Client>>,
    txn: &Transaction<'_>,
    plans: Vec<TablePlan>,
    dir: &Path,
    progress: bool,
) -> Result<(
    Vec<TablePlan>,
    Vec<Option<TableFingerprint>>,
    Vec<ArtifactEntry>,
)> {
    let snapshot: String = crate::pg::query_one(txn, "SELECT pg_export_snapshot()", &[], &[])
        .await?
        .get(0);
    let jobs = Arc::new(Jobs(std::sync::Mutex::new(
        job_order(txn, &plans).await?.into(),
    )));
    let plans = Arc::new(plans);
    let bars = progress.then(indicatif::MultiProgress::new);
    let second = {
        let (jobs, plans) = (jobs.clone(), plans.clone());
        let (dir, bars) = (dir.to_path_buf(), bars.clone());
        tokio::spawn(async move {
            let mut client = second.join().await??;
            let txn = snapshot_transaction(&mut client, Some(&snapshot)).await?;
            let done = work(&txn, &jobs, &plans, &dir, bars.as_ref()).await?;
            txn.commit().await?;
            Ok::<_, anyhow::Error>(done)
        })
    };
    let first = work(txn, &jobs, &plans, dir, bars.as_ref()).await;
    if first.is_err() {
        // Stop the other connection taking more work; its error, if any, is the same story.
        while jobs.next().is_some() {}
    }
    let second = second
        .await
        .map_err(|e| anyhow::anyhow!("the extract's second connection panicked: {e}"))?;
    let (mut first, second) = (first?, second?);
    first.extend(second);
    let n = plans.len();
    let mut fingerprints: Vec<Option<TableFingerprint>> = (0..n).map(|_| None).collect();
    let mut copies: Vec<Option<ArtifactEntry>> = (0..n).map(|_| None).collect();
    for d in first {
        match d {
            Done::Copy(i, written) => {
                let (entry, fingerprint) = written.entry()?;
                if fingerprint.is_some() {
                    fingerprints[i] = fingerprint;
                }
                copies[i] = Some(entry);
            }
            Done::Fingerprint(i, fp) => fingerprints[i] = Some(fp),
        }
    }
    let plans =
        Arc::try_unwrap(plans).map_err(|_| anyhow::anyhow!("extract plans still shared"))?;
    match copies.into_iter().collect::<Option<Vec<_>>>() {
        Some(c) => Ok((plans, fingerprints, c)),
        None => bail!("the extract finished with a table not copied"),
    }
}

/// Copies largest table first (on-disk size), so the two connections finish close together;
/// then the fingerprints, which are server work only.
async fn job_order(txn: &Transaction<'_>, plans: &[TablePlan]) -> Result<Vec<Job>> {
    let names: Vec<&str> = plans.iter().map(|p| p.qualified.as_str()).collect();
    let sizes: Vec<i64> = crate::pg::query_one(
        txn,
        "SELECT array_agg(pg_relation_size(t::regclass) ORDER BY n) \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n)",
        &[&names],
        &[tokio_postgres::types::Type::TEXT_ARRAY],
    )
    .await
    .context("cannot read the tables' sizes")?
    .get(0);
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let mut jobs: Vec<Job> = order.into_iter().map(Job::Copy).collect();
    jobs.extend(
        (0..plans.len())
            .filter(|&i| plans[i].row_hashes.is_none() && !plans[i].summed_by_copy())
            .map(Job::Fingerprint),
    );
    Ok(jobs)
}

/// Take jobs until none is left.
async fn work(
    txn: &Transaction<'_>,
    jobs: &Jobs,
    plans: &[TablePlan],
    dir: &Path,
    bars: Option<&indicatif::MultiProgress>,
) -> Result<Vec<Done>> {
    let mut done = Vec::new();
    while let Some(job) = jobs.next() {
        done.push(match job {
            Job::Copy(i) => Done::Copy(i, copy_table(txn, &plans[i], dir, bars).await?),
            Job::Fingerprint(i) => {
                let p = &plans[i];
                let fp = fingerprint::compute_over(txn, &p.qualified, p.coverage, &p.fingerprinted);
                Done::Fingerprint(i, fp.await?)
            }
        });
    }
    Ok(done)
}

/// The extract's manifest (without time, source and catalogue), checking that every table's
/// rows were all read, and its row hashes too.
fn manifest_of(
    plans: Vec<TablePlan>,
    fingerprints: Vec<Option<TableFingerprint>>,
    copies: Vec<ArtifactEntry>,
) -> Result<Manifest> {
    let mut tables = BTreeMap::new();
    let mut entries = BTreeMap::new();
    let mut hashes = Vec::new();
    for ((plan, fp), entry) in plans.into_iter().zip(fingerprints).zip(copies) {
        let Some(fp) = fp else {
            hashes.push((plan, entry));
            continue;
        };
        if entry.rows != fp.rows {
            bail!(
                "{}: read {} rows but the snapshot holds {}; this should not happen inside one snapshot",
                plan.qualified,
                entry.rows,
                fp.rows
            );
        }
        tables.insert(
            plan.qualified.clone(),
            TableEntry {
                qualified: plan.qualified.clone(),
                artifact: plan.artifact.clone(),
                role: plan.role.to_string(),
                key_columns: plan.key_columns.clone(),
                fingerprint: fp,
                row_hashes: None,
            },
        );
        entries.insert(plan.artifact.clone(), entry);
    }
    for (plan, entry) in hashes {
        let table = tables
            .get_mut(&plan.qualified)
            .with_context(|| format!("row hashes of {} without its table", plan.qualified))?;
        if entry.rows != table.fingerprint.rows {
            bail!(
                "{}: hashed {} rows but the snapshot holds {}; this should not happen inside one snapshot",
                plan.qualified,
                entry.rows,
                table.fingerprint.rows
            );
        }
        table.row_hashes = plan.row_hashes;
        entries.insert(plan.artifact, entry);
    }
    let mut hasher = Sha256::new();
    for (name, t) in &tables {
        hasher.update(format!(
            "{name}:{:?}:{}:{}\n",
            t.fingerprint.coverage, t.fingerprint.rows, t.fingerprint.digest
        ));
    }
    Ok(Manifest {
        stage: "extract".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        extracted_at: String::new(),
        source: None,
        fingerprint: hex::encode(hasher.finalize()),
        tables,
        artifacts: entries,
        catalog: None,
        load_validation: None,
    })
}

/// A table whose rows have all been read, its file being finished on its writer's thread.
struct Written {
    writer: std::thread::JoinHandle<Result<Option<Finished>>>,
    dir: PathBuf,
    rows: u64,
    schema: arrow::datatypes::SchemaRef,
    notes: Vec<String>,
}

/// What a table's writer thread leaves: the file (renamed into place), its rows and SHA-256,
/// and the table's fingerprint when the writer summed it ([`TablePlan::summed_by_copy`]).
type Finished = (PathBuf, u64, String, Option<TableFingerprint>);

impl Written {
    /// Wait for the file (flushed, synced, renamed, hashed as it was written) and describe it,
    /// with the table's fingerprint when its rows were summed on the way.
    fn entry(self) -> Result<(ArtifactEntry, Option<TableFingerprint>)> {
        let (path, rows, sha256, fingerprint) = self
            .writer
            .join()
            .map_err(|_| anyhow::anyhow!("a Parquet writer of the extract panicked"))??
            .context("an extracted file was not finished")?;
        if rows != self.rows {
            bail!(
                "{}: {rows} rows written, {} read",
                path.display(),
                self.rows
            );
        }
        let mut entry =
            ArtifactEntry::describe_hashed(&self.dir, &path, rows, sha256, &self.schema)?;
        entry.notes = self.notes;
        Ok((entry, fingerprint))
    }
}

/// Stream one table into its Parquet file. The connection is free for the next job as soon as
/// the last row is read: the file is finished (synced and renamed) on the writer's thread
/// meanwhile, and [`Written::entry`] waits for it.
#[tracing::instrument(name = "table", skip_all, fields(table = %plan.artifact))]
async fn copy_table(
    txn: &Transaction<'_>,
    plan: &TablePlan,
    dir: &Path,
    bars: Option<&indicatif::MultiProgress>,
) -> Result<Written> {
    let started = Instant::now();
    let profiled;
    let typed = match &plan.typed_at_copy {
        None => (&plan.select, &plan.kinds, &plan.fields, &plan.notes),
        Some(columns) => {
            let profiles = numeric_profiles(txn, &plan.qualified, columns).await?;
            profiled = typed_columns(columns, &profiles);
            (
                &profiled.select,
                &profiled.kinds,
                &profiled.fields,
                &profiled.notes,
            )
        }
    };
    let (select, kinds, fields, notes) = typed;
    let schema = Arc::new(Schema::new(fields.clone()));
    let path = dir.join(format!("{}.parquet", plan.artifact));
    let mut file = ParquetArtifact::unsorted(&path, schema.clone())?;
    let bar = if let Some(bars) = bars {
        let estimate: i64 = txn
            .query_one(
                "SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = $1::text::regclass",
                &[&plan.qualified],
            )
            .await?
            .get(0);
        Some(bars.add(progress_bar(&plan.artifact, estimate as u64)))
    } else {
        None
    };
    let decoder = CopyDecoder::new(
        &plan.qualified,
        schema.clone(),
        kinds.clone(),
        plan.with_row_numbers,
    )
    .with_key(&plan.key_columns);
    let query = format!("SELECT {} FROM {} t", select.join(", "), plan.qualified);
    // The table's fingerprint, summed by the writer from the rows it writes, when the client
    // can hash them.
    let mut row_sum = plan
        .summed_by_copy()
        .then(|| {
            fingerprint::RowSum::new(
                &plan.qualified,
                plan.coverage,
                &plan.fingerprinted,
                &plan.fingerprinted_at,
                plan.server_utf8,
                &schema,
            )
        })
        .transpose()?;
    // Parquet encoding runs on its own thread while this task decodes the next rows; the
    // channel holds two batches, so memory stays flat. A writer that falls behind makes this
    // task wait on the channel, not the runtime's thread: the other connection's task goes on
    // decoding meanwhile. The file is finished only once every row was read (`all_read`);
    // otherwise it is dropped, and its temporary file with it.
    let (to_writer, mut batches) = tokio::sync::mpsc::channel::<RecordBatch>(2);
    let all_read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_path = path.clone();
    let writer_all_read = all_read.clone();
    let writer = std::thread::spawn(move || -> Result<Option<Finished>> {
        while let Some(batch) = batches.blocking_recv() {
            if let Some(sum) = &mut row_sum {
                sum.add(&batch)
                    .with_context(|| format!("cannot fingerprint {}", writer_path.display()))?;
            }
            file.write(&batch)
                .with_context(|| format!("cannot write {}", writer_path.display()))?;
        }
        if !writer_all_read.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        let (path, rows, sha256) = file
            .finish_hashed()
            .with_context(|| format!("cannot write {}", writer_path.display()))?;
        Ok(Some((path, rows, sha256, row_sum.map(|s| s.finish()))))
    });
    let (sender, file) = (&to_writer, &path);
    let copied = pg_arrow::copy_out(txn, &query, decoder, |batch, done| {
        if let Some(bar) = &bar {
            if done > bar.length().unwrap_or(0) {
                bar.set_length(done);
            }
            bar.set_position(done);
        }
        async move {
            if sender.send(batch).await.is_err() {
                bail!("the writer of {} stopped", file.display());
            }
            Ok(())
        }
    })
    .await;
    all_read.store(copied.is_ok(), std::sync::atomic::Ordering::SeqCst);
    drop(to_writer);
    let rows = match copied {
        Ok(rows) => rows,
        Err(e) => {
            // The writer's own error says more than "the writer stopped".
            writer
                .join()
                .map_err(|_| anyhow::anyhow!("the writer of {} panicked", path.display()))??;
            return Err(e);
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    tracing::info!(
        "extract {}: {} rows, {:.2} s",
        plan.artifact,
        artifacts::human_count(rows),
        started.elapsed().as_secs_f64()
    );
    Ok(Written {
        writer,
        dir: dir.to_path_buf(),
        rows,
        schema,
        notes: notes.clone(),
    })
}

fn progress_bar(name: &str, rows: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(rows);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>18} [{bar:30}] {human_pos}/{human_len} rows {per_sec}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar
}

/// Replace `dest` by `new` (both directories), keeping the old one until the new one is in place.
pub fn swap_dir(new: &Path, dest: &Path) -> Result<()> {
    let old = dest.with_file_name(format!(
        ".{}.old-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    if dest.exists() {
        std::fs::rename(dest, &old)
            .with_context(|| format!("cannot move {} aside", dest.display()))?;
    }
    std::fs::rename(new, dest)
        .with_context(|| format!("cannot move {} into place", dest.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("cannot remove {}", old.display()))?;
    }
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_without_case_spaces_or_punctuation() {
        assert_eq!(normalize_name("External ID"), "externalid");
        assert_eq!(normalize_name("external_id"), "externalid");
        assert_eq!(normalize_name("Promotion(s)"), "promotions");
        assert_eq!(snake_case("Promo Code (2024)"), "promo_code_2024");
    }

    fn column(name: &str) -> PgColumn {
        PgColumn {
            name: name.into(),
            type_name: "text".into(),
            typname: "text".into(),
            category: 'S',
            typmod: -1,
            not_null: false,
            generated: false,
            elem_oid: 0,
            elem_typname: String::new(),
            collation_deterministic: true,
        }
    }

    #[test]
    fn export_headers_map_to_canonical_names_whatever_their_casing() {
        let canonical =
            read_source_columns(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline")))
                .unwrap();
        let cols: Vec<PgColumn> = [
            "E-mail",
            "FIRST NAME",
            "last_name",
            "Tags",
            "Date Registered",
            "Referrer",
        ]
        .into_iter()
        .map(column)
        .collect();
        let plan = plan_source("public", "systemeio", &cols, &canonical["systemeio"]).unwrap();
        let names: Vec<&str> = plan.fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[0], "_source_row");
        assert!(
            plan.select
                .contains(&"\"E-mail\"::text AS \"email\"".to_string()),
            "{:?}",
            plan.select
        );
        assert!(plan
            .select
            .contains(&"\"FIRST NAME\"::text AS \"first_name\"".to_string()));
        assert!(plan
            .select
            .contains(&"\"Date Registered\"::text AS \"created_at\"".to_string()));
        assert!(plan
            .select
            .contains(&"NULL::text AS \"contact_id\"".to_string()));
        // An extra column is kept, after the canonical ones.
        assert_eq!(names.last(), Some(&"referrer"));
    }

    #[test]
    fn two_columns_for_one_canonical_name_is_an_error() {
        let canonical =
            read_source_columns(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline")))
                .unwrap();
        let cols: Vec<PgColumn> = ["Email", "e_mail", "Tag"].into_iter().map(column).collect();
        let err = plan_source("public", "systemeio", &cols, &canonical["systemeio"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"Email\" and \"e_mail\" all match `email`"),
            "{err}"
        );
    }
}
