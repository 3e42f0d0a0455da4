//! Has anything changed since extraction? Recomputed inside the load's transaction.
//!
//! Source tables must be exactly as extracted. Destination tables may differ only by what this
//! very approval puts there (so that a second `--apply` of it is allowed and changes nothing):
//! a row that is neither in the extract nor in the staged data (a new sign-up) or a row that was
//! extracted, is kept by the staged data and is gone now, is drift, and is named.

use crate::artifacts::{Manifest, TableEntry, EXTRACT_DIR};
use crate::error::Refusal;
use crate::fingerprint::{self, quote_ident, Coverage};
use anyhow::{Context, Result};
use std::path::Path;
use tokio_postgres::Transaction;

/// `"auth"."users"` -> `auth.users`.
pub fn display_name(qualified: &str) -> String {
    qualified.replace('"', "")
}

/// How the load treats a destination table when judging drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treatment {
    /// The load replaces its contents with the staged rows (profiles, transactions, enrollments).
    Reconciled,
    /// The load only adds the staged rows (auth users and identities).
    AppendOnly,
    /// The load does not write it (courses).
    Untouched,
}

/// The staged temporary table that holds rows the load puts into `table`, if any.
fn staged_for(table: &str) -> (Treatment, Option<&'static str>) {
    match table {
        "public.unified_profiles" => (Treatment::Reconciled, Some("cm_stage_unified_profiles")),
        "public.transactions" => (Treatment::Reconciled, Some("cm_stage_transactions")),
        "public.enrollments" => (Treatment::Reconciled, Some("cm_stage_enrollments")),
        "auth.users" => (Treatment::AppendOnly, Some("cm_stage_auth_users")),
        "auth.identities" => (Treatment::AppendOnly, Some("cm_stage_auth_identities")),
        _ => (Treatment::Untouched, None),
    }
}

/// Refuse when a source table's fingerprint differs from the extract's.
pub async fn check_sources(tx: &Transaction<'_>, extract: &Manifest) -> Result<()> {
    for entry in extract.tables.values().filter(|t| t.role == "source") {
        let now = fingerprint::compute(
            tx,
            &entry.qualified,
            entry.fingerprint.coverage,
            &entry.key_columns,
        )
        .await?;
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
    artifacts_dir: &Path,
    extract: &Manifest,
) -> Result<()> {
    for (n, entry) in extract
        .tables
        .values()
        .filter(|t| t.role == "destination")
        .enumerate()
    {
        let keys = key_columns(entry);
        let now = fingerprint::compute(tx, &entry.qualified, Coverage::Keys, &keys).await?;
        let same_keys_as_extracted = entry.fingerprint.coverage == Coverage::Keys
            && entry.key_columns == keys
            && now == entry.fingerprint;
        if same_keys_as_extracted {
            continue;
        }
        key_diff(tx, artifacts_dir, extract, entry, &keys, n).await?;
    }
    Ok(())
}

fn key_columns(entry: &TableEntry) -> Vec<String> {
    if entry.key_columns.is_empty() {
        vec!["id".to_string()]
    } else {
        entry.key_columns.clone()
    }
}

async fn key_diff(
    tx: &Transaction<'_>,
    artifacts_dir: &Path,
    extract: &Manifest,
    entry: &TableEntry,
    keys: &[String],
    n: usize,
) -> Result<()> {
    let name = display_name(&entry.qualified);
    let artifact = extract
        .artifacts
        .get(&entry.artifact)
        .with_context(|| format!("extract manifest lists no artifact {}", entry.artifact))?;
    let path = artifacts_dir.join(EXTRACT_DIR).join(&artifact.file);
    let extracted = format!("cm_extracted_keys_{n}");
    let cols: Vec<String> = keys.iter().map(|k| quote_ident(k)).collect();
    let cols = cols.join(", ");
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE {extracted} ON COMMIT DROP AS SELECT {cols} FROM {q} WITH NO DATA",
        q = entry.qualified
    ))
    .await?;
    super::stage::copy_columns(tx, &path, keys, &extracted).await?;
    tx.batch_execute(&format!("ANALYZE {extracted}")).await?;

    let (treatment, staged) = staged_for(&name);
    let match_on = |a: &str, b: &str| -> String {
        keys.iter()
            // Text equality with a NULL marker: hashable, so this stays a hash join at scale.
            .map(|k| {
                format!(
                    "coalesce({a}.{q}::text, '<null>') = coalesce({b}.{q}::text, '<null>')",
                    q = quote_ident(k)
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    // Staged rows can only be matched when the staged file carries the key columns.
    let staged = match staged {
        Some(t) => {
            let has_keys: bool = tx
                .query_one(
                    "SELECT count(*) = cardinality($2::text[]) FROM pg_attribute \
                     WHERE attrelid = $1::text::regclass AND attname = ANY ($2::text[]) AND NOT attisdropped",
                    &[&t, &keys],
                )
                .await?
                .get(0);
            has_keys.then_some(t)
        }
        None => None,
    };
    let not_staged = |alias: &str| match staged {
        Some(t) => format!(
            " AND NOT EXISTS (SELECT 1 FROM {t} s WHERE {})",
            match_on("s", alias)
        ),
        None => String::new(),
    };
    // Identities the load creates carry the new users' ids.
    let extra = if name == "auth.identities" {
        " AND NOT EXISTS (SELECT 1 FROM cm_stage_auth_users s WHERE s.id = l.user_id)"
    } else {
        ""
    };
    let gained_sql = format!(
        "SELECT {lcols} FROM {q} l WHERE NOT EXISTS (SELECT 1 FROM {extracted} e WHERE {m}){ns}{extra}",
        lcols = keys.iter().map(|k| format!("l.{}", quote_ident(k))).collect::<Vec<_>>().join(", "),
        q = entry.qualified,
        m = match_on("e", "l"),
        ns = not_staged("l"),
    );
    let lost_filter = match (treatment, staged) {
        // Rows the staged data drops may be gone already (a previous apply of this approval).
        (Treatment::Reconciled, Some(t)) => {
            format!(
                " AND EXISTS (SELECT 1 FROM {t} s WHERE {})",
                match_on("s", "e")
            )
        }
        _ => String::new(),
    };
    let lost_sql = format!(
        "SELECT e.* FROM {extracted} e WHERE NOT EXISTS (SELECT 1 FROM {q} l WHERE {m}){lost_filter}",
        q = entry.qualified,
        m = match_on("e", "l"),
    );
    let gained = summarize(tx, &gained_sql, keys).await?;
    let lost = summarize(tx, &lost_sql, keys).await?;
    if gained.0 == 0 && lost.0 == 0 {
        return Ok(());
    }
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
    Err(Refusal::SourceDrift {
        table: name,
        detail: parts.join("; "),
    }
    .into())
}

/// Count of a set of keys and up to five of them as `col=value`.
async fn summarize(tx: &Transaction<'_>, sql: &str, keys: &[String]) -> Result<(i64, Vec<String>)> {
    let n: i64 = tx
        .query_one(&format!("SELECT count(*) FROM ({sql}) x"), &[])
        .await?
        .get(0);
    if n == 0 {
        return Ok((0, Vec::new()));
    }
    let shown: Vec<String> = keys
        .iter()
        .map(|k| format!("'{k}=' || coalesce(x.{}::text, 'NULL')", quote_ident(k)))
        .collect();
    let rows = tx
        .query(
            &format!(
                "SELECT concat_ws(', ', {}) FROM ({sql}) x ORDER BY 1 LIMIT 5",
                shown.join(", ")
            ),
            &[],
        )
        .await?;
    Ok((n, rows.iter().map(|r| r.get(0)).collect()))
}
