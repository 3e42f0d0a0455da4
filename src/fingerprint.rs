//! Fingerprints of tables, so that a later stage can tell whether a table changed since extraction.
//!
//! A fingerprint is computed by Postgres in one pass and does not depend on row order:
//! the row count and the sum of a 64-bit hash of each row's key text. Sources are fingerprinted
//! on their whole row (any change counts); destination tables on their keys only, because the
//! live app keeps updating columns it owns (progress, activity times) and that is not drift.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a fingerprint covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Every column of every row.
    WholeRow,
    /// The set of keys (rows gained or lost).
    Keys,
}

/// The fingerprint of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFingerprint {
    pub coverage: Coverage,
    pub rows: u64,
    /// sha256 of `rows:hashsum`, hex.
    pub digest: String,
}

/// The SQL expression hashed per row.
pub fn row_expression(coverage: Coverage, key_columns: &[String]) -> String {
    match coverage {
        Coverage::WholeRow => "t::text".to_string(),
        Coverage::Keys => key_columns
            .iter()
            .map(|c| format!("coalesce(t.{}::text, '')", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" || '|' || "),
    }
}

/// Fingerprint `qualified_table` (already quoted) on the given connection or transaction.
pub async fn compute(
    client: &impl tokio_postgres::GenericClient,
    qualified_table: &str,
    coverage: Coverage,
    key_columns: &[String],
) -> Result<TableFingerprint> {
    let expr = row_expression(coverage, key_columns);
    let sql = format!(
        "SELECT count(*)::int8, coalesce(sum(('x' || left(md5({expr}), 16))::bit(64)::int8::numeric), 0)::text \
         FROM {qualified_table} t"
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .with_context(|| format!("cannot fingerprint {qualified_table}"))?;
    let rows: i64 = row.get(0);
    let sum: String = row.get(1);
    Ok(TableFingerprint {
        coverage,
        rows: rows as u64,
        digest: hex::encode(Sha256::digest(format!("{rows}:{sum}").as_bytes())),
    })
}

/// Quote an identifier for Postgres.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
