//! Extract: stream the sources and the current destination tables into Parquet.
//!
//! Everything is read inside one `REPEATABLE READ` snapshot, with binary `COPY ... TO STDOUT`
//! decoded straight into Arrow batches, so memory stays flat whatever the table size. The source
//! tables (`xendit`, `systemeio`) come out in canonical form whatever their shape: columns are
//! matched to canonical names through `pipeline/source_columns.csv` and every value is text,
//! exactly as Postgres prints it (parsing is a business rule, done by the pipeline SQL).
//! Destination tables keep their types (see [`crate::pg_arrow`]).

use crate::artifacts::{self, ArtifactEntry, Manifest, ParquetArtifact, TableEntry, EXTRACT_DIR};
use crate::cli::{ExtractArgs, GlobalArgs};
use crate::connect::ConnInfo;
use crate::error::Refusal;
use crate::fingerprint::{self, quote_ident, Coverage};
use crate::pg_arrow::{self, CopyDecoder, Kind, PgColumn, SOURCE_NAME_KEY};
use anyhow::{bail, Context, Result};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio_postgres::{IsolationLevel, Transaction};

/// The alias table, relative to the pipeline directory.
pub const SOURCE_COLUMNS: &str = "source_columns.csv";

/// The trusted source tables.
pub const SOURCES: [(&str, &str); 2] = [("public", "xendit"), ("public", "systemeio")];
/// The tables the load rebuilds or reads.
pub const DESTINATIONS: [(&str, &str); 6] = [
    ("auth", "users"),
    ("auth", "identities"),
    ("public", "courses"),
    ("public", "unified_profiles"),
    ("public", "transactions"),
    ("public", "enrollments"),
];
/// Tables whose dependents (foreign keys pointing at them) are extracted too.
const REFERENCED: [&str; 3] = [
    "public.unified_profiles",
    "public.transactions",
    "public.enrollments",
];

pub async fn run(global: &GlobalArgs, args: &ExtractArgs, quiet: bool) -> Result<Manifest> {
    let conn = ConnInfo::resolve(args.db.database_url.as_deref())?;
    tracing::info!("extract from {conn} (settings from {})", conn.source);
    extract(
        &conn,
        &global.artifacts,
        &global.pipeline,
        crate::logging::show_progress(quiet),
    )
    .await
}

/// One canonical column of a source table, from the alias table.
#[derive(Debug, Clone)]
pub struct CanonicalColumn {
    pub name: String,
    pub required: bool,
    /// Accepted names besides `name`, as written in the alias table.
    pub aliases: Vec<String>,
}

/// The alias table: canonical columns per source table, in order.
pub fn read_source_columns(pipeline: &Path) -> Result<BTreeMap<String, Vec<CanonicalColumn>>> {
    let path = pipeline.join(SOURCE_COLUMNS);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the source column aliases {}", path.display()))?;
    let mut out: BTreeMap<String, Vec<CanonicalColumn>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_csv_line(line);
        if fields.len() < 3 {
            bail!(
                "{} line {}: expected table,column,required,aliases",
                path.display(),
                n + 1
            );
        }
        let required = match fields[2].trim() {
            "yes" | "true" => true,
            "no" | "false" | "" => false,
            other => bail!(
                "{} line {}: required must be yes or no, not `{other}`",
                path.display(),
                n + 1
            ),
        };
        out.entry(fields[0].trim().to_string())
            .or_default()
            .push(CanonicalColumn {
                name: fields[1].trim().to_string(),
                required,
                aliases: fields
                    .get(3)
                    .map(|a| {
                        a.split('|')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            });
    }
    Ok(out)
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
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
    select: Vec<String>,
    kinds: Vec<Kind>,
    fields: Vec<Field>,
    with_row_numbers: bool,
    notes: Vec<String>,
}

/// Map a source table's columns onto its canonical columns.
fn plan_source(
    schema: &str,
    table: &str,
    columns: &[PgColumn],
    canonical: &[CanonicalColumn],
) -> Result<TablePlan> {
    let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let mut used = vec![false; columns.len()];
    let mut select = Vec::new();
    let mut fields = vec![Field::new("_source_row", DataType::Int64, false)];
    let mut notes = Vec::new();
    let found = || {
        columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for canon in canonical {
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
        match matches.as_slice() {
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
                        found: found(),
                    }
                    .into());
                }
                select.push(format!("NULL::text AS {}", quote_ident(&canon.name)));
                meta.insert(pg_arrow::PG_TYPE_KEY.to_string(), "missing".to_string());
            }
            [i] => {
                used[*i] = true;
                let col = &columns[*i];
                select.push(format!(
                    "{}::text AS {}",
                    quote_ident(&col.name),
                    quote_ident(&canon.name)
                ));
                meta.insert(pg_arrow::PG_TYPE_KEY.to_string(), col.type_name.clone());
                if col.name != canon.name {
                    meta.insert(SOURCE_NAME_KEY.to_string(), col.name.clone());
                    notes.push(format!("column \"{}\" read as {}", col.name, canon.name));
                }
            }
            many => bail!(
                "table {schema}.{table}: columns {} all match `{}`; rename or drop one of them",
                many.iter()
                    .map(|i| format!("\"{}\"", columns[*i].name))
                    .collect::<Vec<_>>()
                    .join(" and "),
                canon.name
            ),
        }
        fields.push(Field::new(&canon.name, DataType::Utf8, true).with_metadata(meta));
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
        fields.push(Field::new(&name, DataType::Utf8, true).with_metadata(meta));
    }
    let kinds = vec![Kind::Text; select.len()];
    Ok(TablePlan {
        qualified,
        artifact: table.to_string(),
        role: "source",
        key_columns: Vec::new(),
        coverage: Coverage::WholeRow,
        select,
        kinds,
        fields,
        with_row_numbers: true,
        notes,
    })
}

/// Destination and dependent tables keep their columns and types.
async fn plan_typed(
    txn: &Transaction<'_>,
    schema: &str,
    table: &str,
    role: &'static str,
) -> Result<TablePlan> {
    let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let columns = pg_arrow::table_columns(txn, &qualified).await?;
    let mut select = Vec::new();
    let mut kinds = Vec::new();
    let mut fields = Vec::new();
    let mut notes = Vec::new();
    for col in &columns {
        let (kind, expr) = if col.typname == "numeric" && col.category != 'A' {
            let found = if pg_arrow::numeric_typmod(col.typmod).is_some() {
                None
            } else {
                let row = txn
                    .query_one(&pg_arrow::numeric_profile_sql(&qualified, &col.name), &[])
                    .await
                    .with_context(|| format!("cannot inspect {qualified}.{}", col.name))?;
                Some((
                    row.get::<_, i32>(0),
                    row.get::<_, i32>(1),
                    row.get::<_, bool>(2),
                ))
            };
            let kind = pg_arrow::numeric_kind(col.typmod, found);
            let expr = match kind {
                Kind::Text => {
                    notes.push(format!(
                        "numeric column {} does not fit DECIMAL(38); written as text",
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
        fields.push(pg_arrow::field(
            &col.name,
            &kind,
            &col.type_name,
            !col.not_null,
        ));
        kinds.push(kind);
        select.push(expr);
    }
    let mut key_columns: Vec<String> = txn
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY a.attnum",
            &[&qualified],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if schema == "auth" && table == "users" {
        // A user whose email changed since extraction is drift too.
        key_columns.push("email".into());
    }
    if key_columns.is_empty() {
        key_columns = columns.iter().map(|c| c.name.clone()).collect();
    }
    Ok(TablePlan {
        qualified,
        artifact: artifact_name(schema, table),
        role,
        key_columns,
        coverage: Coverage::Keys,
        select,
        kinds,
        fields,
        with_row_numbers: false,
        notes,
    })
}

/// `auth.users` -> `auth_users`; public tables keep their name.
pub fn artifact_name(schema: &str, table: &str) -> String {
    if schema == "public" {
        table.to_string()
    } else {
        format!("{schema}_{table}")
    }
}

async fn require_table(txn: &Transaction<'_>, schema: &str, table: &str, what: &str) -> Result<()> {
    let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let exists: Option<String> = txn
        .query_one("SELECT to_regclass($1)::text", &[&qualified])
        .await?
        .get(0);
    if exists.is_none() {
        bail!("{what} table {schema}.{table} does not exist in this database");
    }
    Ok(())
}

/// Extract every table into `artifacts/extract/` and write its manifest.
pub async fn extract(
    conn: &ConnInfo,
    artifacts_dir: &Path,
    pipeline_dir: &Path,
    progress: bool,
) -> Result<Manifest> {
    let canonical = read_source_columns(pipeline_dir)?;
    let mut client = conn.connect().await?;
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .context("cannot start the snapshot transaction")?;
    let extracted_at: String = txn
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await?
        .get(0);

    let mut plans = Vec::new();
    for (schema, table) in SOURCES {
        require_table(&txn, schema, table, "source").await?;
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let columns = pg_arrow::table_columns(&txn, &qualified).await?;
        let canon = canonical.get(table).with_context(|| {
            format!(
                "{} lists no columns for {table}",
                pipeline_dir.join(SOURCE_COLUMNS).display()
            )
        })?;
        plans.push(plan_source(schema, table, &columns, canon)?);
    }
    for (schema, table) in DESTINATIONS {
        require_table(&txn, schema, table, "destination").await?;
        plans.push(plan_typed(&txn, schema, table, "destination").await?);
    }
    let dependents = txn
        .query(
            "SELECT DISTINCT n.nspname::text, c.relname::text \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype = 'f' AND k.confrelid = ANY($1::text[]::regclass[]) ORDER BY 1, 2",
            &[&REFERENCED.to_vec()],
        )
        .await
        .context("cannot list the tables that reference the destination tables")?;
    for row in dependents {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        if DESTINATIONS.contains(&(schema.as_str(), table.as_str())) {
            continue;
        }
        plans.push(plan_typed(&txn, &schema, &table, "dependent").await?);
    }

    // Write into a fresh directory, then swap it in: a failed run leaves the last good extract.
    artifacts::create_private_dir(artifacts_dir)?;
    let tmp_dir = artifacts_dir.join(format!(".{EXTRACT_DIR}.tmp-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(tmp_dir.clone());
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir)?;
    }
    artifacts::create_private_dir(&tmp_dir)?;

    // Fingerprints are computed on a second connection that shares the snapshot, while the
    // first one streams the rows.
    let snapshot: String = txn
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0);
    let mut fp_client = conn.connect().await?;
    let fp_jobs: Vec<(String, Coverage, Vec<String>)> = plans
        .iter()
        .map(|p| (p.qualified.clone(), p.coverage, p.key_columns.clone()))
        .collect();
    let fingerprints = async move {
        let fp_txn = fp_client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        fp_txn
            .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
            .await
            .context("cannot share the snapshot with the fingerprint connection")?;
        let mut out = Vec::new();
        for (qualified, coverage, keys) in &fp_jobs {
            out.push(fingerprint::compute(&fp_txn, qualified, *coverage, keys).await?);
        }
        fp_txn.commit().await?;
        Ok::<_, anyhow::Error>(out)
    };
    let copies = async {
        let mut out = Vec::new();
        for plan in &plans {
            out.push(copy_table(&txn, plan, &tmp_dir, progress).await?);
        }
        Ok::<_, anyhow::Error>(out)
    };
    let (fingerprints, copies) = tokio::try_join!(fingerprints, copies)?;

    let mut tables = BTreeMap::new();
    let mut entries = BTreeMap::new();
    for ((plan, fp), entry) in plans.into_iter().zip(fingerprints).zip(copies) {
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
            },
        );
        entries.insert(plan.artifact.clone(), entry);
    }
    txn.commit().await?;

    let mut hasher = Sha256::new();
    for (name, t) in &tables {
        hasher.update(format!(
            "{name}:{:?}:{}:{}\n",
            t.fingerprint.coverage, t.fingerprint.rows, t.fingerprint.digest
        ));
    }
    let manifest = Manifest {
        stage: "extract".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        extracted_at,
        source: Some(conn.to_string()),
        fingerprint: hex::encode(hasher.finalize()),
        tables,
        artifacts: entries,
    };
    manifest.write(&tmp_dir)?;
    swap_dir(&tmp_dir, &artifacts_dir.join(EXTRACT_DIR))?;
    let total: u64 = manifest.artifacts.values().map(|e| e.rows).sum();
    tracing::info!(
        "extract: {} tables, {} rows, fingerprint {}",
        manifest.artifacts.len(),
        artifacts::human_count(total),
        &manifest.fingerprint[..12]
    );
    Ok(manifest)
}

/// Stream one table into its Parquet file; returns its manifest entry.
async fn copy_table(
    txn: &Transaction<'_>,
    plan: &TablePlan,
    dir: &Path,
    progress: bool,
) -> Result<ArtifactEntry> {
    let started = Instant::now();
    let schema = Arc::new(Schema::new(plan.fields.clone()));
    let path = dir.join(format!("{}.parquet", plan.artifact));
    let mut file = ParquetArtifact::create(&path, schema.clone())?;
    let bar = if progress {
        let estimate: i64 = txn
            .query_one(
                "SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = $1::text::regclass",
                &[&plan.qualified],
            )
            .await?
            .get(0);
        Some(progress_bar(&plan.artifact, estimate as u64))
    } else {
        None
    };
    let decoder = CopyDecoder::new(
        &plan.qualified,
        schema.clone(),
        plan.kinds.clone(),
        plan.with_row_numbers,
    );
    let query = format!("SELECT {} FROM {}", plan.select.join(", "), plan.qualified);
    // Parquet encoding runs on its own thread while this task decodes the next rows; the
    // channel holds two batches, so memory stays flat.
    let (to_writer, batches) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || -> Result<ParquetArtifact> {
        for batch in batches {
            file.write(&batch)
                .with_context(|| format!("cannot write {}", writer_path.display()))?;
        }
        Ok(file)
    });
    let copied = pg_arrow::copy_out(txn, &query, decoder, |batch, done| {
        if to_writer.send(batch).is_err() {
            bail!("the writer of {} stopped", path.display());
        }
        if let Some(bar) = &bar {
            if done > bar.length().unwrap_or(0) {
                bar.set_length(done);
            }
            bar.set_position(done);
        }
        Ok(())
    })
    .await;
    drop(to_writer);
    // The writer's own error says more than "the writer stopped".
    let file = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer of {} panicked", path.display()))??;
    let rows = copied?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (written, _) = file.finish()?;
    let mut entry = ArtifactEntry::describe(dir, &written, rows, &schema)?;
    entry.notes = plan.notes.clone();
    tracing::info!(
        "extract {}: {} rows, {}, {:.2} s",
        plan.artifact,
        artifacts::human_count(rows),
        artifacts::human_bytes(entry.bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(entry)
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

    #[test]
    fn csv_lines_with_quotes() {
        assert_eq!(
            split_csv_line(r#"xendit,payment_id,no,"invoice id|""id"""#),
            vec!["xendit", "payment_id", "no", "invoice id|\"id\""]
        );
    }
}
