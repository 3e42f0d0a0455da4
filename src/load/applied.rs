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

/// Fingerprint each relation (quoted, qualified) over its columns; `None` for one that lacks
/// one of them. One query reads every relation's columns and the fingerprints are asked at once
/// (pipelined on the one connection), in the order given.
async fn fingerprints_of(
    tx: &Transaction<'_>,
    wanted: &[(String, &[String])],
) -> Result<Vec<Option<TableState>>> {
    let names: Vec<String> = wanted.iter().map(|(name, _)| name.clone()).collect();
    let present = crate::pg_arrow::tables_columns(tx, &names).await?;
    let mut chosen = Vec::with_capacity(wanted.len());
    for ((name, columns), present) in wanted.iter().zip(present) {
        let present =
            present.with_context(|| format!("cannot read the columns of {name}: no such table"))?;
        // A column gone since: no fingerprint to compare, not an error.
        chosen.push(fingerprint::chosen_columns(&present, name, Coverage::Keys, columns).ok());
    }
    crate::pg::pipelined(
        wanted
            .iter()
            .zip(&chosen)
            .map(|((name, columns), chosen)| async move {
                let Some(chosen) = chosen else {
                    return Ok(None);
                };
                let f = fingerprint::compute_over(tx, name, Coverage::Keys, chosen).await?;
                Ok(Some(TableState {
                    columns: columns.to_vec(),
                    rows: f.rows,
                    digest: f.digest,
                }))
            }),
    )
    .await
}

/// The fingerprints a load takes after its writes, before its validation: of the destination
/// tables over the columns the load decides, and of each reconciled table's staged rows over the
/// same columns. The validation compares the two ([`Loaded::holds_staged_rows_alone`]); an
/// applied load records the first as its resulting state ([`Loaded::into_state`]).
pub struct Loaded {
    /// By `schema.table`: every catalogue table, or the reconciled ones alone.
    tables: BTreeMap<String, TableState>,
    /// By table name (`unified_profiles`); absent when a column could not be read.
    staged: BTreeMap<String, TableState>,
    every_table: bool,
}

impl Loaded {
    /// Take them inside the load's transaction after its writes: every catalogue table when
    /// `every_table` (the state an applied load records), else the reconciled ones. One lookup
    /// reads every relation's columns, then every fingerprint is asked at once.
    pub async fn take(
        tx: &Transaction<'_>,
        catalog: &Catalog,
        reconcilers: &[(String, Reconcile)],
        every_table: bool,
    ) -> Result<Self> {
        let reconciler = |table: &Table| {
            reconcilers
                .iter()
                .find(|(name, _)| name == &table.name && table.is_reconciled())
                .map(|(_, r)| r)
        };
        let tables: Vec<(&Table, Option<&Reconcile>, Vec<String>)> = catalog
            .tables
            .iter()
            .map(|table| (table, reconciler(table)))
            .filter(|(_, r)| every_table || r.is_some())
            .map(|(table, r)| (table, r, decided_columns(table, r)))
            .collect();
        let mut wanted: Vec<(String, &[String])> = tables
            .iter()
            .map(|(table, _, columns)| (table.qualified(), columns.as_slice()))
            .collect();
        let staged: Vec<(&Table, &Reconcile, &[String])> = tables
            .iter()
            .filter_map(|(table, r, columns)| r.map(|r| (*table, r, columns.as_slice())))
            .collect();
        wanted.extend(
            staged
                .iter()
                .map(|(_, r, columns)| (r.source.clone(), *columns)),
        );
        let mut states = fingerprints_of(tx, &wanted).await?.into_iter();
        let mut out = Self {
            tables: BTreeMap::new(),
            staged: BTreeMap::new(),
            every_table,
        };
        for ((table, _, _), state) in tables.iter().zip(states.by_ref()) {
            let state = state.with_context(|| {
                format!("{} lacks a column it was loaded with", table.display())
            })?;
            out.tables.insert(table.display(), state);
        }
        for ((table, _, _), state) in staged.iter().zip(states) {
            if let Some(state) = state {
                out.staged.insert(table.name.clone(), state);
            }
        }
        Ok(out)
    }

    /// Rows of a reconciled table now.
    pub fn rows(&self, table: &Table) -> Option<u64> {
        self.tables.get(&table.display()).map(|s| s.rows)
    }

    /// Whether `table` holds exactly its staged rows, compared over the columns the load decides:
    /// the same number of rows and the same sum of 64-bit row hashes. When it does, every staged
    /// row is in place as approved (row by row, the comparison could only find none differing);
    /// when not, or with rows kept beside the staged ones, the validation compares row by row.
    pub fn holds_staged_rows_alone(&self, table: &Table) -> bool {
        match (
            self.tables.get(&table.display()),
            self.staged.get(&table.name),
        ) {
            (Some(now), Some(staged)) => now == staged,
            _ => false,
        }
    }

    /// The state of every catalogue table, as `run_id` leaves them; taken with `every_table`.
    pub fn into_state(self, run_id: &str) -> State {
        debug_assert!(self.every_table, "a state needs every catalogue table");
        State {
            written_by: run_id.to_string(),
            tables: self.tables,
        }
    }
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
    let mut wanted: Vec<(String, &[String])> = Vec::new();
    let mut tables: Vec<&Table> = Vec::new();
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
        wanted.push((table.qualified(), &then.columns));
        tables.push(table);
    }
    for (table, now) in tables.iter().zip(fingerprints_of(tx, &wanted).await?) {
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
