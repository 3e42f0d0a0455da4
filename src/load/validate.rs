//! The validation pack, run on the real tables inside the run's transaction before commit:
//! row counts per reconciled table, referential checks, auth untouched, every clean row in
//! place, and the plan's figures. Any failure refuses the commit.

use super::apply::ApplyCounts;
use super::reconcile::Reconcile;
use crate::catalog::Catalog;
use crate::error::Refusal;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio_postgres::Transaction;

/// The whole pack after a load or rollback wrote.
pub async fn run(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    counts: &ApplyCounts,
    reconcilers: &[(String, Reconcile)],
) -> Result<Value> {
    let mut checks = row_counts(tx, catalog, counts).await?;
    for (table, r) in reconcilers {
        checks.push((
            format!("every staged {table} row is loaded as approved"),
            r.mismatches(tx).await?,
        ));
    }
    finish(tx, checks, Value::Null).await
}

/// The pack for a load that found the tables as `since_run` left them ([`super::applied`]):
/// the staged rows were not copied, so that run's check that every one of them is in place
/// stands for this one (the columns it compared are unchanged since), and is named.
pub async fn run_unchanged(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    counts: &ApplyCounts,
    since_run: &str,
) -> Result<Value> {
    let checks = row_counts(tx, catalog, counts).await?;
    finish(tx, checks, json!(since_run)).await
}

async fn row_counts(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    counts: &ApplyCounts,
) -> Result<Vec<(String, i64)>> {
    let mut checks: Vec<(String, i64)> = Vec::new();
    for table in catalog.reconciled() {
        let c = &counts.tables[&table.name];
        let expected = (c.staged + c.kept) as i64;
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", table.qualified()), &[])
            .await?
            .get(0);
        checks.push((
            format!("{} row count equals staged ({expected})", table.name),
            (rows - expected).abs(),
        ));
    }
    Ok(checks)
}

async fn finish(
    tx: &Transaction<'_>,
    mut checks: Vec<(String, i64)>,
    rows_in_place_checked_by: Value,
) -> Result<Value> {
    for row in tx
        .query(include_str!("sql/validation_checks.sql"), &[])
        .await
        .context("validation pack failed to run")?
    {
        checks.push((row.get(0), row.get(1)));
    }
    let figures: String = tx
        .query_one(include_str!("sql/seed_validation.sql"), &[])
        .await?
        .get(0);
    let figures: Value = serde_json::from_str(&figures)?;
    let failed: Vec<String> = checks
        .iter()
        .filter(|(_, n)| *n != 0)
        .map(|(name, n)| format!("{name} ({n} failing)"))
        .collect();
    if !failed.is_empty() {
        return Err(Refusal::ValidationFailed {
            checks: failed.join(", "),
            report: "the load's validation (rolled back; nothing was changed)".into(),
        }
        .into());
    }
    let mut report = json!({
        "passed": true,
        "checks": checks.iter().map(|(name, n)| json!({"name": name, "passed": *n == 0, "failing": n})).collect::<Vec<_>>(),
        "figures": figures,
    });
    if !rows_in_place_checked_by.is_null() {
        report["staged_rows_in_place_checked_by_run"] = rows_in_place_checked_by;
    }
    Ok(report)
}
