//! What an applied load left behind, so that applying the same approval again costs little.
//!
//! When a load commits, it records in its own log row a fingerprint of every catalogue table
//! over the columns the load decides: the key and the columns it writes on update (app-owned
//! columns and `updated_at` excluded) for a reconciled table, the key and drift key for the
//! others. A later load of the same approval, with no other load or rollback applied in
//! between, first fingerprints the tables the same way (under the load's table locks). When
//! every table still matches and no reconciled table holds a row outside the staged data, the
//! full comparison could only find that nothing changes: no staged file is copied, nothing is
//! written, and the run says which run left the tables so. Any difference, an app-owned
//! column aside, sends the load down its full path, where drift is found and named as always.

use super::reconcile::Reconcile;
use crate::artifacts::Manifest;
use crate::catalog::{Catalog, Table};
use crate::fingerprint::{self, Coverage};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

/// One table's fingerprint over the columns the load decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableState {
    pub columns: Vec<String>,
    pub rows: u64,
    pub digest: String,
}

/// What an applied load left: the run that wrote the tables so (a later run that found them
/// unchanged records the same), and each catalogue table's fingerprint, by `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub written_by: String,
    pub tables: BTreeMap<String, TableState>,
}

/// A load of this approval already committed and the tables are still as it left them.
pub struct Unchanged {
    /// The run that wrote them so.
    pub since_run: String,
    /// Rows of each reconciled table (all of them staged ones).
    pub rows: BTreeMap<String, u64>,
}

/// The columns fingerprinted for `table`: what a second load's comparison would look at.
fn decided_columns(table: &Table, reconciler: Option<&Reconcile>) -> Vec<String> {
    let mut columns = vec![table.key.clone()];
    let rest = match reconciler {
        Some(r) => r.update_columns.clone(),
        None => table.drift_key.clone(),
    };
    for c in rest {
        if !columns.contains(&c) {
            columns.push(c);
        }
    }
    columns
}

/// Fingerprint each table over its columns; `None` for a table one of whose columns no longer
/// exists. One query reads every table's columns and the fingerprints are asked at once
/// (pipelined on the one connection), in the order given.
async fn fingerprints_of(
    tx: &Transaction<'_>,
    wanted: &[(&Table, &[String])],
) -> Result<Vec<Option<TableState>>> {
    let names: Vec<String> = wanted.iter().map(|(t, _)| t.qualified()).collect();
    let present = crate::pg_arrow::tables_columns(tx, &names).await?;
    let mut chosen = Vec::with_capacity(wanted.len());
    for ((table, columns), present) in wanted.iter().zip(present) {
        let present = present.with_context(|| {
            format!(
                "cannot read the columns of {}: no such table",
                table.display()
            )
        })?;
        // A column gone since: no fingerprint to compare, not an error.
        chosen.push(
            fingerprint::chosen_columns(&present, &table.qualified(), Coverage::Keys, columns).ok(),
        );
    }
    crate::pg::pipelined(wanted.iter().zip(&names).zip(&chosen).map(
        |(((_, columns), name), chosen)| async move {
            let Some(chosen) = chosen else {
                return Ok(None);
            };
            let f = fingerprint::compute_over(tx, name, Coverage::Keys, chosen).await?;
            Ok(Some(TableState {
                columns: columns.to_vec(),
                rows: f.rows,
                digest: f.digest,
            }))
        },
    ))
    .await
}

/// The state of every catalogue table, taken inside the load's transaction after its writes.
pub async fn capture(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    reconcilers: &[(String, Reconcile)],
    run_id: &str,
) -> Result<State> {
    let columns: Vec<Vec<String>> = catalog
        .tables
        .iter()
        .map(|table| {
            let r = reconcilers
                .iter()
                .find(|(name, _)| name == &table.name && table.is_reconciled())
                .map(|(_, r)| r);
            decided_columns(table, r)
        })
        .collect();
    let wanted: Vec<(&Table, &[String])> = catalog
        .tables
        .iter()
        .zip(&columns)
        .map(|(t, c)| (t, c.as_slice()))
        .collect();
    let mut tables = BTreeMap::new();
    for ((table, _), s) in wanted.iter().zip(fingerprints_of(tx, &wanted).await?) {
        let s =
            s.with_context(|| format!("{} lacks a column it was loaded with", table.display()))?;
        tables.insert(table.display(), s);
    }
    Ok(State {
        written_by: run_id.to_string(),
        tables,
    })
}

/// Record `state` in the run's log row, inside the load's transaction (it commits with it).
pub async fn record(tx: &Transaction<'_>, run_id: &str, state: &State) -> Result<()> {
    crate::pg::execute(
        tx,
        "UPDATE cleanmig.population_operation_log SET applied_state = $2::text::jsonb \
         WHERE run_id = $1 AND operation = 'load'",
        &[&run_id, &serde_json::to_string(state)?],
        &[Type::TEXT, Type::TEXT],
    )
    .await
    .context("cannot record the load's resulting state in population_operation_log")?;
    Ok(())
}

/// Whether the last applied load or rollback is a load of `approval_sha256` whose tables are
/// still as it left them; see the module documentation.
pub async fn unchanged_since(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    stage: &Manifest,
    approval_sha256: &str,
) -> Result<Option<(Unchanged, State)>> {
    let last = crate::pg::query_opt(
        tx,
        "SELECT run_id, operation, approval_sha256, applied_state::text \
             FROM cleanmig.population_operation_log \
             WHERE status = 'success' AND mode = 'apply' ORDER BY id DESC LIMIT 1",
        &[],
        &[],
    )
    .await
    .context("cannot read population_operation_log")?;
    let Some(last) = last else {
        return Ok(None);
    };
    let (run, operation): (String, String) = (last.get(0), last.get(1));
    let (approval, state): (Option<String>, Option<String>) = (last.get(2), last.get(3));
    if operation != "load" || approval.as_deref() != Some(approval_sha256) {
        return Ok(None);
    }
    let Some(state) = state else {
        return Ok(None);
    };
    let Ok(state) = serde_json::from_str::<State>(&state) else {
        tracing::warn!("the state load {run} recorded is not readable: comparing in full");
        return Ok(None);
    };
    let mut rows = BTreeMap::new();
    let mut wanted: Vec<(&Table, &[String])> = Vec::new();
    for table in &catalog.tables {
        let Some(then) = state.tables.get(&table.display()) else {
            return Ok(None);
        };
        if table.is_reconciled() {
            let staged = stage.artifacts.get(table.stage_artifact()).map(|a| a.rows);
            if staged != Some(then.rows) {
                // Rows kept beside the staged ones (`--dependents keep`): the full path decides.
                return Ok(None);
            }
            rows.insert(table.name.clone(), then.rows);
        }
        wanted.push((table, &then.columns));
    }
    for ((table, _), now) in wanted.iter().zip(fingerprints_of(tx, &wanted).await?) {
        if now.as_ref() != state.tables.get(&table.display()) {
            tracing::info!(
                "{} changed since load {} applied this approval: comparing in full",
                table.display(),
                state.written_by
            );
            return Ok(None);
        }
    }
    Ok(Some((
        Unchanged {
            since_run: state.written_by.clone(),
            rows,
        },
        state,
    )))
}
