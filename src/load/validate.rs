//! The validation pack, run on the real tables inside the run's transaction before commit:
//! row counts per reconciled table, auth untouched, every clean row in place (the tool's own),
//! and the pipeline's checks and figures (`pipeline/load/`, as approved). Any failure refuses
//! the commit.
//!
//! Every clean row in place: a table that holds exactly its staged rows has the same
//! fingerprint over the columns the load decides (row count and sum of 64-bit row hashes) as
//! they have, and is passed on it; any other table (its fingerprint differs, or it keeps rows
//! beside the staged ones) is compared row by row, so a failure's count is exact.

use super::applied::{Loaded, State};
use super::apply::ApplyCounts;
use super::reconcile::Reconcile;
use crate::artifacts::LoadValidation;
use crate::catalog::{Catalog, Table};
use crate::error::Refusal;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio_postgres::Transaction;

/// The whole pack after a load wrote. `loaded`: the fingerprints taken after its writes, which
/// give each table's row count and spare the row-by-row comparison of a table that holds exactly
/// its staged rows ([`Loaded::holds_staged_rows_alone`]).
pub async fn run(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    sql: &LoadValidation,
    counts: &ApplyCounts,
    reconcilers: &[(String, Reconcile)],
    loaded: &Loaded,
) -> Result<Value> {
    let mut checks = Vec::new();
    let mut compare_rows = Vec::new();
    for table in catalog.reconciled() {
        let rows = loaded
            .rows(table)
            .with_context(|| format!("no fingerprint of {} after the load", table.display()))?;
        checks.push(row_count(table, rows as i64, counts));
        if !loaded.holds_staged_rows_alone(table) {
            compare_rows.push(table.name.as_str());
        }
    }
    let own = async {
        // Asked at once; a table passed on its fingerprint costs no query.
        let failing = crate::pg::pipelined(reconcilers.iter().map(|(table, r)| {
            let row_by_row = compare_rows.contains(&table.as_str());
            tracing::debug!(
                "{table}: staged rows in place, compared {}",
                if row_by_row {
                    "row by row"
                } else {
                    "by fingerprint (the table holds its staged rows alone)"
                }
            );
            async move {
                if row_by_row {
                    r.mismatches(tx).await
                } else {
                    Ok(0)
                }
            }
        }))
        .await?;
        for ((table, _), failing) in reconcilers.iter().zip(failing) {
            checks.push((
                format!("every staged {table} row is loaded as approved"),
                failing,
            ));
        }
        Ok(checks)
    };
    finish(tx, own, sql, Value::Null).await
}

/// The pack for a load that found the tables as `since_run` left them ([`super::applied`]):
/// the staged rows were not copied, so that run's check that every one of them is in place
/// stands for this one (the columns it compared are unchanged since), and is named. The row
/// counts are those of the fingerprints this load took under its table locks, which matched
/// `state`; it has written nothing since.
pub async fn run_unchanged(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    sql: &LoadValidation,
    counts: &ApplyCounts,
    since_run: &str,
    state: &State,
) -> Result<Value> {
    let mut checks = Vec::new();
    for table in catalog.reconciled() {
        let rows = state
            .tables
            .get(&table.display())
            .with_context(|| format!("no fingerprint of {}", table.display()))?
            .rows;
        checks.push(row_count(table, rows as i64, counts));
    }
    finish(tx, async { Ok(checks) }, sql, json!(since_run)).await
}

/// The check that `table` holds `rows`: its staged rows and those kept beside them.
fn row_count(table: &Table, rows: i64, counts: &ApplyCounts) -> (String, i64) {
    let c = &counts.tables[&table.name];
    let expected = (c.staged + c.kept) as i64;
    (
        format!("{} row count equals staged ({expected})", table.name),
        (rows - expected).abs(),
    )
}

/// `own`: the tool's own checks. They, the pipeline's checks and figures and the auth checks
/// are sent at once (pipelined) and run in that order; the first to fail is the error.
async fn finish(
    tx: &Transaction<'_>,
    own: impl std::future::Future<Output = Result<Vec<(String, i64)>>>,
    sql: &LoadValidation,
    rows_in_place_checked_by: Value,
) -> Result<Value> {
    let ((mut checks, (pipeline_checks, figures)), auth) = crate::pg::pipelined2(
        crate::pg::pipelined2(own, read_only(tx, pipeline_sql(tx, sql))),
        async {
            crate::pg::query(tx, include_str!("sql/auth_checks.sql"), &[], &[])
                .await
                .context("the auth checks of the validation pack failed to run")
        },
    )
    .await?;
    checks.extend(pipeline_checks);
    for row in auth {
        checks.push((row.get(0), row.get(1)));
    }
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

/// The pipeline's checks and figures, each row read with its shape checked.
async fn pipeline_sql(
    tx: &Transaction<'_>,
    sql: &LoadValidation,
) -> Result<(Vec<(String, i64)>, Value)> {
    let checks_file = format!("pipeline/{} (as approved)", LoadValidation::CHECKS);
    let figures_file = format!("pipeline/{} (as approved)", LoadValidation::FIGURES);
    // Both asked at once (pipelined); a failure of the first is the error reported.
    let (check_rows, figures) = crate::pg::pipelined2(
        async {
            crate::pg::query(tx, sql.checks.as_str(), &[], &[])
                .await
                .with_context(|| format!("{checks_file} failed to run"))
        },
        async {
            crate::pg::query_one(tx, sql.figures.as_str(), &[], &[])
                .await
                .with_context(|| format!("{figures_file} failed to run"))
        },
    )
    .await?;
    let mut checks = Vec::new();
    for row in check_rows {
        let check = (row.try_get(0), row.try_get(1));
        let (Ok(name), Ok(failing)) = check else {
            bail!("{checks_file}: each row must be a check's name (text) and its failing rows (bigint)");
        };
        checks.push((name, failing));
    }
    let figures: String = figures
        .try_get(0)
        .with_context(|| format!("{figures_file}: its one row must hold one JSON text"))?;
    let figures = serde_json::from_str(&figures)
        .with_context(|| format!("{figures_file}: its result is not JSON"))?;
    Ok((checks, figures))
}

/// Run `work` with the transaction read-only, in a savepoint rolled back afterwards: the
/// pipeline's SQL may read the tables the run wrote, and a statement of it that would write
/// fails instead. The run's own writes stay; its read-write mode comes back with the rollback.
/// The three go out at once (pipelined), so `work` must send all its statements when first
/// polled (as [`crate::pg::pipelined`] does); the rollback runs whether `work` failed or not.
async fn read_only<T>(
    tx: &Transaction<'_>,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let (((), result), ()) = crate::pg::pipelined2(
        crate::pg::pipelined2(
            async {
                tx.batch_execute("SAVEPOINT cm_read_only; SET LOCAL transaction_read_only = on")
                    .await
                    .context("cannot make the validation read-only")
            },
            work,
        ),
        async {
            tx.batch_execute("ROLLBACK TO SAVEPOINT cm_read_only; RELEASE SAVEPOINT cm_read_only")
                .await
                .context("cannot leave the validation's read-only savepoint")
        },
    )
    .await?;
    Ok(result)
}
