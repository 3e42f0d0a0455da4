//! Has anything changed since extraction? Recomputed inside the load's transaction.
//!
//! Source tables must be exactly as extracted. Destination tables may differ only by what this
//! very approval puts there (so that a second `--apply` of it is allowed and changes nothing):
//! a row that is neither in the extract nor in the staged data (a new sign-up) or a row that was
//! extracted, is kept by the staged data and is gone now, is drift, and is named.

use super::changes::{differing_values, Changes, Versions};
use super::stage::{ApprovedFiles, Staged};
use crate::artifacts::{Manifest, TableEntry, EXTRACT_DIR, ROW_HASH_COLUMN};
use crate::catalog::Catalog;
use crate::error::Refusal;
use crate::fingerprint::{self, Coverage, Wanted};
use crate::sql::{ident, ident_list};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

/// `"auth"."users"` -> `auth.users`.
pub fn display_name(qualified: &str) -> String {
    qualified.replace('"', "")
}

/// Refuse when a source table's fingerprint differs from the extract's.
pub async fn check_sources(tx: &Transaction<'_>, extract: &Manifest) -> Result<()> {
    let sources: Vec<&TableEntry> = extract
        .tables
        .values()
        .filter(|t| t.role == "source")
        .collect();
    let wanted: Vec<Wanted> = sources
        .iter()
        .map(|entry| Wanted {
            qualified: &entry.qualified,
            coverage: entry.fingerprint.coverage,
            key_columns: &entry.key_columns,
        })
        .collect();
    let fingerprints = fingerprint::compute_all(tx, &wanted).await?;
    for (entry, now) in sources.into_iter().zip(fingerprints) {
        if now != entry.fingerprint {
            return Err(Refusal::SourceDrift {
                table: display_name(&entry.qualified),
                detail: if now.rows != entry.fingerprint.rows {
                    format!(
                        "{} rows at extraction, {} now",
                        entry.fingerprint.rows, now.rows
                    )
                } else {
                    format!("{} rows, contents differ", now.rows)
                },
            }
            .into());
        }
    }
    Ok(())
}

/// Refuse when a destination table gained or lost rows since extraction, naming their keys.
/// Needs the staged temporary tables.
pub async fn check_destinations(
    tx: &Transaction<'_>,
    files: &ApprovedFiles,
    extract: &Manifest,
    catalog: &Catalog,
    staged: &BTreeMap<String, Staged>,
) -> Result<()> {
    let destinations: Vec<(&TableEntry, Vec<String>)> = extract
        .tables
        .values()
        .filter(|t| t.role == "destination")
        .map(|entry| (entry, key_columns(entry)))
        .collect();
    let wanted: Vec<Wanted> = destinations
        .iter()
        .map(|(entry, keys)| Wanted {
            qualified: &entry.qualified,
            coverage: Coverage::Keys,
            key_columns: keys,
        })
        .collect();
    let fingerprints = fingerprint::compute_all(tx, &wanted).await?;
    // The helper function is made for the first table whose keys differ, if any.
    let mut helper = false;
    for (n, ((entry, keys), now)) in destinations.iter().zip(fingerprints).enumerate() {
        let same_keys_as_extracted = entry.fingerprint.coverage == Coverage::Keys
            && entry.key_columns == *keys
            && now == entry.fingerprint;
        if same_keys_as_extracted {
            continue;
        }
        if !helper {
            tx.batch_execute(include_str!("sql/drift_keys_function.sql"))
                .await
                .context("cannot create the drift helper function")?;
            helper = true;
        }
        let extracted = format!("cm_extracted_keys_{n}");
        load_extracted_keys(tx, files, extract, entry, keys, &extracted).await?;
        let table = catalog.by_qualified(&entry.qualified);
        // Staged rows can only be matched when the staged file carries the key columns.
        let staged_rel: Option<String> = table
            .and_then(|t| staged.get(t.stage_artifact()))
            .filter(|s| keys.iter().all(|k| s.columns.contains(k)))
            .map(|s| s.temp.clone());
        let reconciled = table.is_some_and(|t| t.is_reconciled());
        let (gained, lost) = keys_sample(
            tx,
            &[
                &entry.qualified,
                &keys,
                &extracted,
                &staged_rel,
                &reconciled,
            ],
        )
        .await?;
        refuse_if_drifted(display_name(&entry.qualified), gained, lost)?;
    }
    // Temporary objects live as long as the server connection, which a transaction pooler
    // hands to other clients after this transaction: leave nothing behind.
    if helper {
        tx.batch_execute("DROP FUNCTION pg_temp.cleanmig_keys(regclass, text[])")
            .await
            .context("cannot drop the drift helper function")?;
    }
    Ok(())
}

/// Whether the load would overwrite or delete any live row of `table`: a staged row whose
/// live version differs on a column the load writes, or a live row in the delete set. When it
/// would not (a run re-applied after its approval was loaded), no value can have drifted under
/// it, and the extracted rows need not be loaded to compare.
async fn overwrites_anything(
    tx: &Transaction<'_>,
    r: &super::reconcile::Reconcile,
    table: &crate::catalog::Table,
) -> Result<bool> {
    let key = ident(&table.key);
    let differs = if r.update_columns.is_empty() {
        "false".to_string()
    } else {
        let row = |alias: &str| {
            r.update_columns
                .iter()
                .map(|c| format!("{alias}.{}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "EXISTS (SELECT 1 FROM {staged} s JOIN {live} l ON l.{key} = s.{key} \
               WHERE ROW({s}) IS DISTINCT FROM ROW({l}))",
            staged = ident(&table.temp()),
            live = table.qualified(),
            s = row("s"),
            l = row("l"),
        )
    };
    let sql = format!(
        "SELECT {differs} OR EXISTS (SELECT 1 FROM {deletes} d JOIN {live} l ON l.{key} = d.key)",
        deletes = ident(&table.delete_set()),
        live = table.qualified(),
    );
    let row = crate::pg::query_one(tx, &sql, &[], &[])
        .await
        .with_context(|| format!("cannot compare the staged and live {}", table.display()))?;
    Ok(row.get(0))
}

/// A table whose live rows the load overwrites or deletes, for the value-drift check.
struct Overwritten<'a> {
    r: &'a super::reconcile::Reconcile,
    table: &'a crate::catalog::Table,
    /// The table's extracted artifact.
    extracted: &'a crate::artifacts::ArtifactEntry,
    /// The table's live columns (`None`: no such table).
    live: Option<Vec<crate::pg_arrow::PgColumn>>,
}

/// What a table's row hashes are compared with: the extract's row-hash artifact and the live
/// columns it hashed.
struct HashCheck<'a> {
    artifact: &'a crate::artifacts::ArtifactEntry,
    hashed: Vec<crate::pg_arrow::PgColumn>,
    temp: String,
}

/// Whether the extract's row hashes can answer for `t` ([`hashes_unchanged`]), and with what.
fn hash_check<'a>(extract: &'a Manifest, t: &Overwritten<'_>) -> Result<Option<HashCheck<'a>>> {
    let Some(hashes) = extract
        .tables
        .get(&t.table.qualified())
        .and_then(|e| e.row_hashes.as_ref())
    else {
        return Ok(None);
    };
    let was_extracted = |c: &String| t.extracted.schema.iter().any(|e| &e.name == c);
    let covered =
        t.r.update_columns
            .iter()
            .filter(|c| was_extracted(c))
            .all(|c| hashes.columns.contains(c));
    let live = t.live.as_deref().unwrap_or_default();
    let hashed: Option<Vec<_>> = hashes
        .columns
        .iter()
        .map(|c| live.iter().find(|l| &l.name == c).cloned())
        .collect();
    let (Some(hashed), true, true) = (hashed, covered, hashes.key == t.table.key) else {
        return Ok(None);
    };
    let artifact = extract
        .artifacts
        .get(&hashes.artifact)
        .with_context(|| format!("the extract has no {}", hashes.artifact))?;
    Ok(Some(HashCheck {
        artifact,
        hashed,
        temp: ident(&format!(
            "cm_extracted_hashes_{}",
            t.table.extract_artifact()
        )),
    }))
}

/// For each table, whether every live row the load would overwrite or delete still has the
/// hash the extract recorded for it ([`crate::artifacts::RowHashes`]), over columns that
/// include every column the load writes. Copies back keys and hashes only, for every table in
/// a few round trips (pipelined): the tables for the hashes; the COPYs prepared; each COPY; the
/// comparisons. `false` when the extract has no row hashes for the table, or they cannot
/// answer (a hashed column is gone): the caller then compares values in full, which also tells
/// a value the app changed from one that already equals the staged one.
async fn hashes_unchanged(
    tx: &Transaction<'_>,
    files: &ApprovedFiles,
    extract: &Manifest,
    tables: &[Overwritten<'_>],
) -> Result<Vec<bool>> {
    let checks: Vec<Option<HashCheck>> = tables
        .iter()
        .map(|t| hash_check(extract, t))
        .collect::<Result<_>>()?;
    let checked: Vec<(&Overwritten, &HashCheck)> = tables
        .iter()
        .zip(&checks)
        .filter_map(|(t, c)| c.as_ref().map(|c| (t, c)))
        .collect();
    if checked.is_empty() {
        return Ok(vec![false; tables.len()]);
    }
    let hash = ident(ROW_HASH_COLUMN);
    let creates: Vec<String> = checked
        .iter()
        .map(|(t, c)| {
            format!(
                "CREATE TEMP TABLE {temp} ON COMMIT DROP AS \
                   SELECT {key}, 0::int8 AS {hash} FROM {live} WITH NO DATA",
                temp = c.temp,
                key = ident(&t.table.key),
                live = t.table.qualified()
            )
        })
        .collect();
    let mut uploads = Vec::new();
    for (t, c) in &checked {
        let path = files.copy(&format!("{EXTRACT_DIR}/{}", c.artifact.file))?;
        let columns = [t.table.key.clone(), ROW_HASH_COLUMN.to_string()];
        let (schema, batches) = super::stage::read_parquet(&path, Some(&columns))?;
        uploads.push(super::stage::Upload {
            temp: c.temp.clone(),
            path,
            schema,
            batches,
            span: tracing::info_span!("row_hashes", table = %t.table.display()),
        });
    }
    super::stage::create_and_copy(tx, &creates, uploads, "the extracted row hashes").await?;
    // Per table, rows whose hash differs first, by a hash join over every row (a differing
    // hash is rare), then whether any of them is one the load overwrites or deletes. Asked as
    // EXISTS over the join, the planner picks a nested loop that probes the index once per row.
    let compares: Vec<(String, String)> = checked
        .iter()
        .map(|(t, c)| {
            let key = ident(&t.table.key);
            let analyze = format!("ANALYZE {temp} ({key})", temp = c.temp);
            let sql = format!(
                "WITH changed AS MATERIALIZED ( \
                   SELECT t.{key} AS key FROM {live} t JOIN {temp} h ON h.{key} = t.{key} \
                   WHERE {row_hash} IS DISTINCT FROM h.{hash}) \
                 SELECT count(*) FROM changed c \
                 WHERE c.key IN (SELECT s.{key} FROM {staged} s UNION ALL SELECT d.key FROM {deletes} d)",
                live = t.table.qualified(),
                temp = c.temp,
                staged = ident(&t.table.temp()),
                deletes = ident(&t.table.delete_set()),
                row_hash = fingerprint::row_hash(&c.hashed),
            );
            (analyze, sql)
        })
        .collect();
    // Every table's ANALYZE and comparison sent at once (pipelined; each runs after its ANALYZE).
    let changed = crate::pg::pipelined(checked.iter().zip(&compares).map(
        |((t, _), (analyze, sql))| async move {
            let ((), changed) =
                crate::pg::pipelined2(async { Ok(tx.batch_execute(analyze).await?) }, async {
                    crate::pg::query_one(tx, sql, &[], &[])
                        .await
                        .with_context(|| {
                            format!("cannot compare the row hashes of {}", t.table.display())
                        })
                })
                .await?;
            Ok::<_, anyhow::Error>(changed.get::<_, i64>(0))
        },
    ))
    .await?;
    let mut changed = changed.into_iter();
    Ok(checks
        .iter()
        .map(|c| match c {
            Some(_) => changed.next() == Some(0),
            None => false,
        })
        .collect())
}

fn key_columns(entry: &TableEntry) -> Vec<String> {
    if entry.key_columns.is_empty() {
        vec!["id".to_string()]
    } else {
        entry.key_columns.clone()
    }
}

/// The extracted key columns of a table into a temporary table shaped like the live one.
async fn load_extracted_keys(
    tx: &Transaction<'_>,
    files: &ApprovedFiles,
    extract: &Manifest,
    entry: &TableEntry,
    keys: &[String],
    temp: &str,
) -> Result<()> {
    let artifact = extract
        .artifacts
        .get(&entry.artifact)
        .with_context(|| format!("extract manifest lists no artifact {}", entry.artifact))?;
    let path = files.copy(&format!("{EXTRACT_DIR}/{}", artifact.file))?;
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE {t} ON COMMIT DROP AS SELECT {cols} FROM {q} WITH NO DATA",
        t = ident(temp),
        cols = ident_list("", keys),
        q = entry.qualified
    ))
    .await?;
    super::stage::copy_columns(tx, &path, keys, &ident(temp)).await?;
    tx.batch_execute(&format!("ANALYZE {}", ident(temp)))
        .await?;
    Ok(())
}

/// Run a drift query: (total, first keys as `col=value, ...`).
/// The rows added and removed since extraction (`sql/drift_rows.sql`): each side's total and
/// first keys.
async fn keys_sample(
    tx: &Transaction<'_>,
    params: &[&(dyn ToSql + Sync)],
) -> Result<((i64, Vec<String>), (i64, Vec<String>))> {
    let rows = tx
        .query(include_str!("sql/drift_rows.sql"), params)
        .await
        .context("cannot compare the keys with the extract")?;
    let side = |name: &str| {
        let of_side: Vec<_> = rows
            .iter()
            .filter(|r| r.get::<_, &str>(0) == name)
            .collect();
        let total = of_side.first().map(|r| r.get::<_, i64>(1)).unwrap_or(0);
        (total, of_side.iter().map(|r| r.get(2)).collect())
    };
    Ok((side("added"), side("removed")))
}

fn refuse_if_drifted(
    table: String,
    gained: (i64, Vec<String>),
    lost: (i64, Vec<String>),
) -> Result<()> {
    let mut parts = Vec::new();
    if gained.0 > 0 {
        parts.push(format!(
            "{} rows added, e.g. {}",
            gained.0,
            gained.1.join("; ")
        ));
    }
    if lost.0 > 0 {
        parts.push(format!(
            "{} rows removed, e.g. {}",
            lost.0,
            lost.1.join("; ")
        ));
    }
    if parts.is_empty() {
        return Ok(());
    }
    Err(Refusal::SourceDrift {
        table,
        detail: parts.join("; "),
    }
    .into())
}

/// Refuse when a value the load would overwrite or delete changed since extraction: for every
/// reconciled table, the live rows that are staged or in the delete set are compared with the
/// extracted rows on every column the load writes (app-owned columns excluded). A live value
/// that already equals the staged one (an earlier apply of this approval) is no change. The
/// full list goes to `report` (a private file); the message shows emails masked.
///
/// Two shortcuts come first, each of which can only say "nothing changed": nothing live would
/// be overwritten or deleted, or every such row hashes as at extraction. Any other answer
/// takes the full comparison, which copies the extracted rows back.
pub async fn check_values(
    tx: &Transaction<'_>,
    files: &ApprovedFiles,
    extract: &Manifest,
    catalog: &Catalog,
    reconcilers: &[(String, super::reconcile::Reconcile)],
    report: &Path,
) -> Result<()> {
    let mut found = Changes::default();
    // The first shortcut for every table at once, with the tables' columns the second one
    // needs (pipelined; read-only queries).
    let names: Vec<String> = catalog.reconciled().map(|t| t.qualified()).collect();
    let (overwrites, live) = crate::pg::pipelined2(
        crate::pg::pipelined(
            reconcilers
                .iter()
                .zip(catalog.reconciled())
                .map(|((_, r), table)| overwrites_anything(tx, r, table)),
        ),
        crate::pg_arrow::tables_columns(tx, &names),
    )
    .await?;
    let mut overwritten = Vec::new();
    for ((((_, r), table), overwrites), live) in reconcilers
        .iter()
        .zip(catalog.reconciled())
        .zip(overwrites)
        .zip(live)
    {
        if !overwrites {
            tracing::debug!(
                "{}: every staged row equals the live one and nothing to delete is live: no value to compare",
                table.display()
            );
            continue;
        }
        let extracted = extract
            .artifacts
            .get(&table.extract_artifact())
            .with_context(|| format!("the extract has no {}", table.display()))?;
        overwritten.push(Overwritten {
            r,
            table,
            extracted,
            live,
        });
    }
    let unchanged = hashes_unchanged(tx, files, extract, &overwritten).await?;
    for (t, unchanged) in overwritten.iter().zip(unchanged) {
        let (r, table, artifact) = (t.r, t.table, t.extracted);
        if unchanged {
            tracing::debug!(
                "{}: every row the load overwrites or deletes hashes as at extraction: no value to compare",
                table.display()
            );
            continue;
        }
        let path = files.copy(&format!("{EXTRACT_DIR}/{}", artifact.file))?;
        let temp = format!("cm_extracted_{}", table.extract_artifact());
        let extracted =
            super::stage::copy_into_temp(tx, &path, &table.qualified(), &temp, &table.key).await?;
        let columns: Vec<String> = r
            .update_columns
            .iter()
            .filter(|c| extracted.columns.contains(c))
            .cloned()
            .collect();
        let key = ident(&table.key);
        let staged = ident(&table.temp());
        let only = format!(
            "SELECT s.{key} FROM {staged} s UNION ALL SELECT d.key FROM {} d",
            ident(&table.delete_set())
        );
        let and = format!("o.{key} IS NULL OR v.other_differs");
        found.extend(
            differing_values(
                tx,
                &Versions {
                    table: &table.display(),
                    key: &table.key,
                    known: &ident(&temp),
                    live: &table.qualified(),
                    columns: &columns,
                    only: Some(&only),
                    and: &and,
                    other: Some(&staged),
                },
            )
            .await?,
        );
    }
    if found.is_empty() {
        return Ok(());
    }
    let written = found.write(report)?;
    Err(Refusal::ValueDrift {
        count: found.total,
        summary: found.summary(),
        artifact: written.display().to_string(),
    }
    .into())
}
