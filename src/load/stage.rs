//! Staged Parquet -> temporary tables, through the binary COPY encoder of `pg_arrow`.

use crate::artifacts::{Manifest, STAGE_DIR};
use crate::catalog::Catalog;
use crate::pg_arrow;
use crate::sql::ident as quote_ident;
use anyhow::{bail, Context, Result};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tokio_postgres::Transaction;
use tracing::Instrument;

/// A staged artifact copied into a temporary table.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The temporary table (unqualified, in `pg_temp`).
    pub temp: String,
    /// Columns of the artifact (all of them exist in the temporary table).
    pub columns: Vec<String>,
    pub rows: u64,
}

/// Copy every staged artifact of the catalogue into its temporary table; a table the load only
/// creates rows in may have none (an empty table stands in). Keyed by artifact name. The
/// temporary tables are created together, and analysed together once every COPY is done.
pub async fn copy_all(
    tx: &Transaction<'_>,
    files: &ApprovedFiles,
    stage: &Manifest,
    catalog: &Catalog,
) -> Result<BTreeMap<String, Staged>> {
    let tables: Vec<_> = catalog.staged().collect();
    for table in &tables {
        let artifact = table.stage_artifact();
        if table.is_reconciled() && !stage.artifacts.contains_key(artifact) {
            bail!(
                "{STAGE_DIR}/manifest.json lists no `{artifact}` artifact; re-run `cleanmig transform`"
            );
        }
    }
    let creates: Vec<String> = tables
        .iter()
        .map(|t| create_temp_sql(&t.qualified(), &t.temp()))
        .collect();
    // The artifacts that exist, opened (each a private copy checked against the approval).
    let mut uploads = Vec::new();
    for table in &tables {
        let artifact = table.stage_artifact();
        if let Some(e) = stage.artifacts.get(artifact) {
            let path = files.copy(&format!("{STAGE_DIR}/{}", e.file))?;
            let (schema, batches) = read_parquet(&path, None)?;
            uploads.push(Upload {
                temp: quote_ident(&table.temp()),
                path,
                schema,
                batches: with_pause(batches),
                span: tracing::info_span!("stage", table = artifact),
            });
        }
    }
    let columns: Vec<Vec<String>> = uploads
        .iter()
        .map(|u| u.schema.fields().iter().map(|f| f.name().clone()).collect())
        .collect();
    let rows = create_and_copy(tx, &creates, uploads, "the staged rows").await?;
    let mut copied = columns.into_iter().zip(rows);
    let mut staged = BTreeMap::new();
    let mut analyze = Vec::new();
    for table in tables {
        let artifact = table.stage_artifact();
        let s = if stage.artifacts.contains_key(artifact) {
            let (columns, rows) = copied.next().expect("copied in this order");
            analyze.push(format!(
                "ANALYZE {} ({})",
                quote_ident(&table.temp()),
                quote_ident(&table.key)
            ));
            Staged {
                temp: table.temp(),
                columns,
                rows,
            }
        } else {
            Staged {
                temp: table.temp(),
                columns: Vec::new(),
                rows: 0,
            }
        };
        tracing::info!(
            "staged {artifact}: {} rows",
            crate::artifacts::human_count(s.rows)
        );
        staged.insert(artifact.to_string(), s);
    }
    // Autovacuum never analyses temporary tables. The reconcile joins on the key; statistics on
    // that column alone are what the planner needs, and cost a fraction of a full ANALYZE.
    if !analyze.is_empty() {
        tx.batch_execute(&analyze.join("; "))
            .await
            .context("cannot analyse the staged rows")?;
    }
    Ok(staged)
}

/// The approved files [`copy_all`] stages (`stage/profiles.parquet`, ...).
pub fn staged_files(stage: &Manifest, catalog: &Catalog) -> Vec<String> {
    catalog
        .staged()
        .filter_map(|table| stage.artifacts.get(table.stage_artifact()))
        .map(|e| format!("{STAGE_DIR}/{}", e.file))
        .collect()
}

/// Open a Parquet file as a schema and a stream of batches, optionally only some columns.
pub fn read_parquet(
    path: &Path,
    only: Option<&[String]>,
) -> Result<(SchemaRef, impl Iterator<Item = Result<RecordBatch>>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    // Batches of large rows stay under the COPY decoder's byte cap, far from the 2 GiB an
    // Arrow text column holds per batch (1,024 rows of 50 MB jsonb would not fit).
    let row_bytes = builder
        .metadata()
        .row_groups()
        .iter()
        .filter(|rg| rg.num_rows() > 0)
        .map(|rg| rg.total_byte_size().max(0) as u64 / rg.num_rows() as u64)
        .max()
        .unwrap_or(0);
    let batch_rows = (pg_arrow::BATCH_BYTES as u64 / row_bytes.max(1)).clamp(1, 1024);
    builder = builder.with_batch_size(batch_rows as usize);
    if let Some(names) = only {
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        for name in names {
            let idx = schema
                .index_of(name)
                .with_context(|| format!("{} has no column `{name}`", path.display()))?;
            roots.push(idx);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    let reader = builder
        .build()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let schema = reader.schema();
    let shown = path.display().to_string();
    let batches = reader.map(move |b| b.with_context(|| format!("cannot read {shown}")));
    Ok((schema, batches))
}

/// Hook for the crash test: with `CLEANMIG_TEST_FAULT=pause-in-copy` the load stops forever
/// inside its first COPY, after the COPY has started, so that a test can kill it there.
fn pause_in_copy() -> bool {
    std::env::var("CLEANMIG_TEST_FAULT").is_ok_and(|v| v == "pause-in-copy")
}

fn create_temp_sql(like: &str, temp: &str) -> String {
    format!(
        "CREATE TEMP TABLE {t} (LIKE {like} INCLUDING DEFAULTS) ON COMMIT DROP",
        t = quote_ident(temp)
    )
}

/// Create `temp` shaped like `like` (a real table), COPY the Parquet file into it and analyse
/// its key.
pub async fn copy_into_temp(
    tx: &Transaction<'_>,
    path: &Path,
    like: &str,
    temp: &str,
    key: &str,
) -> Result<Staged> {
    tx.batch_execute(&create_temp_sql(like, temp))
        .await
        .with_context(|| format!("cannot create temporary table {temp}"))?;
    let staged = copy_into(tx, path, temp).await?;
    tx.batch_execute(&format!(
        "ANALYZE {} ({})",
        quote_ident(temp),
        quote_ident(key)
    ))
    .await?;
    Ok(staged)
}

/// COPY the Parquet file into the existing temporary table `temp`.
async fn copy_into(tx: &Transaction<'_>, path: &Path, temp: &str) -> Result<Staged> {
    let (schema, batches) = read_parquet(path, None)?;
    let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
    let rows = pg_arrow::copy_in(tx, &quote_ident(temp), &schema, with_pause(batches))
        .await
        .with_context(|| format!("cannot load {}", path.display()))?;
    Ok(Staged {
        temp: temp.to_string(),
        columns,
        rows,
    })
}

/// A Parquet file opened for a COPY into a temporary table ([`create_and_copy`]).
pub struct Upload<I> {
    /// The temporary table, quoted.
    pub temp: String,
    pub path: PathBuf,
    pub schema: SchemaRef,
    pub batches: I,
    /// The span its COPY runs in.
    pub span: tracing::Span,
}

/// Create temporary tables (`creates`, which may create more tables than `uploads` fill) and
/// COPY each upload into its table, in a few round trips however many there are: the tables
/// created and their columns read; every COPY prepared; then each COPY's start and end.
/// `what` names the rows in errors. Returns the rows of each upload.
pub async fn create_and_copy<I>(
    tx: &Transaction<'_>,
    creates: &[String],
    uploads: Vec<Upload<I>>,
    what: &str,
) -> Result<Vec<u64>>
where
    I: Iterator<Item = Result<RecordBatch>>,
{
    let temps: Vec<String> = uploads.iter().map(|u| u.temp.clone()).collect();
    let ((), found) = crate::pg::pipelined2(
        async {
            tx.batch_execute(&creates.join("; "))
                .await
                .with_context(|| format!("cannot create the temporary tables for {what}"))
        },
        pg_arrow::tables_columns(tx, &temps),
    )
    .await?;
    let mut plans = Vec::new();
    for (u, columns) in uploads.iter().zip(found) {
        let columns = columns.with_context(|| format!("temporary table {} is missing", u.temp))?;
        plans.push(
            pg_arrow::plan_copy(&u.temp, &u.schema, &columns)
                .with_context(|| format!("cannot load {}", u.path.display()))?,
        );
    }
    let copies = pg_arrow::prepare_copies(tx, plans).await?;
    let mut rows = Vec::with_capacity(copies.len());
    for (copy, u) in copies.iter().zip(uploads) {
        let path = u.path;
        rows.push(
            pg_arrow::copy_prepared(tx, copy, u.batches)
                .instrument(u.span)
                .await
                .with_context(|| format!("cannot load {}", path.display()))?,
        );
    }
    Ok(rows)
}

/// The batches, paused in the first for the crash test ([`pause_in_copy`]).
fn with_pause(
    batches: impl Iterator<Item = Result<RecordBatch>>,
) -> impl Iterator<Item = Result<RecordBatch>> {
    let pause = pause_in_copy();
    batches.inspect(move |_| {
        if pause {
            tracing::warn!("CLEANMIG_TEST_FAULT=pause-in-copy: pausing inside COPY");
            loop {
                std::thread::park();
            }
        }
    })
}

/// COPY only `columns` of a Parquet file into an existing table.
pub async fn copy_columns(
    tx: &Transaction<'_>,
    path: &Path,
    columns: &[String],
    qualified: &str,
) -> Result<u64> {
    let (schema, batches) = read_parquet(path, Some(columns))?;
    pg_arrow::copy_in(tx, qualified, &schema, batches)
        .await
        .with_context(|| format!("cannot load {}", path.display()))
}

/// Private copies of approved files, each hashed while it is copied: the bytes the load reads
/// are the bytes it checked against the approval, whatever happens to the originals meanwhile
/// (another `transform` run, a replaced file). Removed when dropped.
pub struct ApprovedFiles {
    artifacts_dir: PathBuf,
    approval: crate::approve::Approval,
    dir: tempfile::TempDir,
    /// Copies made so far: each file is copied and checked once per run.
    copies: std::sync::Mutex<BTreeMap<String, std::path::PathBuf>>,
}

impl ApprovedFiles {
    fn new(artifacts_dir: &Path, approval: &crate::approve::Approval) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(".load.tmp-")
            .tempdir_in(artifacts_dir)
            .with_context(|| {
                format!(
                    "cannot create a private directory in {}",
                    artifacts_dir.display()
                )
            })?;
        Ok(Self {
            artifacts_dir: artifacts_dir.to_path_buf(),
            approval: approval.clone(),
            dir,
            copies: Default::default(),
        })
    }

    /// Check every approved file against the approval ([`crate::approve::Approval::verify`]),
    /// on a thread of its own: the files in `copy` as their private copies are made (each file
    /// is read and hashed once), the others by their hash.
    pub async fn check(
        artifacts_dir: &Path,
        approval: &crate::approve::Approval,
        copy: Vec<String>,
    ) -> Result<Self> {
        let files = Self::new(artifacts_dir, approval)?;
        tokio::task::spawn_blocking(move || {
            files.approval.verify_each(&files.artifacts_dir, |rel| {
                if copy.iter().any(|c| c == rel) {
                    files.copy(rel).map(drop)
                } else {
                    files.approval.verify_file(&files.artifacts_dir, rel)
                }
            })?;
            Ok(files)
        })
        .await
        .context("the check of the approved files stopped")?
    }

    /// A private copy of `rel` (`stage/profiles.parquet`), refused unless its bytes are the
    /// approved ones.
    pub fn copy(&self, rel: &str) -> Result<std::path::PathBuf> {
        let mut copies = self
            .copies
            .lock()
            .map_err(|_| anyhow::anyhow!("a copy of an approved file failed midway"))?;
        if let Some(path) = copies.get(rel) {
            return Ok(path.clone());
        }
        let path = self.copy_checked(rel)?;
        copies.insert(rel.to_string(), path.clone());
        Ok(path)
    }

    fn copy_checked(&self, rel: &str) -> Result<std::path::PathBuf> {
        use sha2::{Digest, Sha256};
        use std::io::{Read, Write};
        let refused = || crate::error::Refusal::ArtifactModified {
            artifact: rel.to_string(),
        };
        crate::artifacts::check_relative(rel)?;
        let expected = self.approval.files.get(rel).ok_or_else(refused)?;
        let src = self.artifacts_dir.join(rel);
        let mut input = File::open(&src).map_err(|_| refused())?;
        let dest = self.dir.path().join(rel.replace('/', "__"));
        let mut output = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = input
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", src.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            output
                .write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", dest.display()))?;
        }
        if &hex::encode(hasher.finalize()) != expected {
            return Err(refused().into());
        }
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn large_rows_are_read_back_in_small_batches() {
        // Regression: 1,024 rows per batch whatever their size could overflow a text column.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("documents.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("body", DataType::Utf8, true)]));
        let values: Vec<String> = (0..20u8)
            .map(|i| char::from(b'a' + i).to_string().repeat(4 << 20))
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values))])
            .unwrap();
        let mut file = crate::artifacts::ParquetArtifact::create(&path, schema).unwrap();
        file.write(&batch).unwrap();
        file.finish().unwrap();
        let (_, batches) = read_parquet(&path, None).unwrap();
        let sizes: Vec<(usize, usize)> = batches
            .map(|b| {
                let b = b.unwrap();
                (
                    b.num_rows(),
                    b.column(0).as_string::<i32>().value_data().len(),
                )
            })
            .collect();
        assert_eq!(sizes.iter().map(|(n, _)| n).sum::<usize>(), 20);
        assert!(sizes.len() > 1, "{sizes:?}");
        assert!(
            sizes
                .iter()
                .all(|(_, bytes)| *bytes <= pg_arrow::BATCH_BYTES),
            "{sizes:?}"
        );
    }
}
