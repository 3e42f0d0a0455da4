//! Apply complete clean copies of the reconciled tables in foreign-key order: the one write
//! path of load (staged rows) and rollback (backed-up rows).
//!
//! 1. Children first: delete the rows of each delete set that no other reconciled row
//!    references (this frees unique values, such as a deleted test profile's email, before a
//!    clean row takes them).
//! 2. Parents first: update the rows that differ, insert the missing ones.
//! 3. Children first: delete the rest of each delete set (the updates re-pointed whatever
//!    referenced them).

use super::deletes::{self, ForeignKey};
use super::fk_index::ForeignKeyIndexes;
use super::insert_checks::InsertChecks;
use super::reconcile::{Reconcile, TableCounts, UpdateMode};
use crate::catalog::Catalog;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::Transaction;

/// A clean copy of one table: a relation (temporary or backup table) and its columns.
#[derive(Debug, Clone)]
pub struct CleanRows {
    pub relation: String,
    pub columns: Vec<String>,
    pub rows: u64,
    /// Rows of the table that stay although the copy lacks them (`--dependents keep`).
    pub kept: u64,
}

/// Rows that appeared during the run itself, before the reconcile (a trigger on `auth.users`
/// that creates a profile when the load creates a login): they are new rows, so they take every
/// staged column, app-owned ones included, and count as inserted.
pub struct Adopt {
    pub table: String,
    /// A reconciler that writes every staged column.
    pub full: Reconcile,
    /// The table's rows as they were before the run (the backup).
    pub before: String,
}

/// What the deletes of [`apply_in_fk_order`] go by: the foreign keys between reconciled tables,
/// and the indexes the run made for the checks of its deletes, which it sets aside while it
/// writes rows.
pub struct DeleteKeys<'a> {
    pub internal: &'a [ForeignKey],
    pub indexes: &'a mut ForeignKeyIndexes,
}

/// Per-table outcome of [`apply_in_fk_order`], keyed by table name (`unified_profiles`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ApplyCounts {
    pub tables: BTreeMap<String, TableCounts>,
}

impl ApplyCounts {
    fn table(&mut self, name: &str) -> &mut TableCounts {
        self.tables.entry(name.to_string()).or_default()
    }
}

/// Delete the rows of every delete set, children first ([`deletes::delete_rows`]); the
/// statements are sent at once (pipelined), and the server runs them in that order.
async fn delete_children_first(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    internal: &[deletes::ForeignKey],
    unreferenced_only: bool,
    counts: &mut ApplyCounts,
) -> Result<()> {
    let tables: Vec<_> = catalog.reconciled().rev().collect();
    let deleted = crate::pg::pipelined(
        tables
            .iter()
            .map(|table| deletes::delete_rows(tx, table, internal, unreferenced_only)),
    )
    .await?;
    for (table, n) in tables.iter().zip(deleted) {
        counts.table(&table.name).deleted += n;
    }
    Ok(())
}

/// The reconcilers of every reconciled table, parents first.
pub async fn reconcilers(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    clean: &BTreeMap<String, CleanRows>,
    mode: UpdateMode,
) -> Result<Vec<(String, Reconcile)>> {
    let mut wanted = Vec::new();
    for table in catalog.reconciled() {
        let rows = clean
            .get(&table.name)
            .with_context(|| format!("no clean rows for {}", table.display()))?;
        let app_owned: &[String] = match mode {
            UpdateMode::Load => &table.app_owned,
            UpdateMode::Restore => &[],
        };
        wanted.push((table, rows, app_owned));
    }
    // Every table's catalogue lookups asked at once (pipelined).
    crate::pg::pipelined(
        wanted
            .into_iter()
            .map(|(table, rows, app_owned)| async move {
                let qualified = table.qualified();
                let r = Reconcile::new(
                    tx,
                    &qualified,
                    &table.key,
                    &rows.relation,
                    &rows.columns,
                    app_owned,
                    mode,
                )
                .await?;
                Ok::<_, anyhow::Error>((table.name.clone(), r))
            }),
    )
    .await
}

/// What the inserts of [`apply_in_fk_order`] go by: the rows to adopt (inserted during the run
/// by a trigger) and how the inserts check their foreign keys.
pub struct Inserts<'a> {
    pub adopt: &'a [Adopt],
    pub checks: &'a InsertChecks,
}

/// Apply the clean copies (the delete sets must be computed already). Returns what changed.
pub async fn apply_in_fk_order(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    keys: DeleteKeys<'_>,
    clean: &BTreeMap<String, CleanRows>,
    reconcilers: &[(String, Reconcile)],
    inserts: Inserts<'_>,
    steps: &super::Steps,
) -> Result<ApplyCounts> {
    let Inserts { adopt, checks } = inserts;
    let mut counts = ApplyCounts::default();
    for table in catalog.reconciled() {
        let c = counts.table(&table.name);
        c.staged = clean[&table.name].rows;
        c.kept = clean[&table.name].kept;
    }
    let DeleteKeys { internal, indexes } = keys;
    delete_children_first(tx, catalog, internal, true, &mut counts).await?;
    steps.done("deleted: rows nothing else references");
    let aside = indexes.set_aside(tx, &catalog.reconciled_names()).await?;
    tracing::debug!("{aside} of the run's foreign-key indexes set aside while rows are written");
    for (name, r) in reconcilers {
        // Rows to adopt are rows inserted during the run: none when nothing inserted any.
        let adopting = match catalog.reconciled().find(|t| &t.name == name) {
            Some(t) => super::backup::written_in_transaction(tx, t).await?.inserted > 0,
            None => true,
        };
        if let Some(a) = adopt.iter().find(|a| &a.table == name && adopting) {
            let k = crate::sql::ident(&a.full.key);
            let new = format!(
                "NOT EXISTS (SELECT 1 FROM {} b WHERE b.{k} = t.{k})",
                a.before
            );
            counts.table(name).inserted += a.full.update_where(tx, &new).await?;
        }
        // How the insert checks its foreign keys, asked beside the update (pipelined).
        let (updated, table_checks) =
            crate::pg::pipelined2(r.update(tx), checks.table(tx, &r.target)).await?;
        let c = counts.table(name);
        c.updated = updated;
        steps.done(&format!("{name}: rows updated"));
        c.inserted += r.insert(tx, &table_checks).await?;
        steps.done(&format!("{name}: rows inserted"));
    }
    // The set-aside indexes whose parent still has rows to delete come back for the deletes.
    let set_aside = indexes.set_aside_parents();
    let candidates: Vec<_> = catalog
        .reconciled()
        .filter(|t| set_aside.contains(&t.display()))
        .collect();
    let left =
        crate::pg::pipelined(candidates.iter().map(|table| deletes::rows_left(tx, table))).await?;
    let parents: Vec<String> = candidates
        .iter()
        .zip(left)
        .filter(|(_, left)| *left)
        .map(|(table, _)| table.display())
        .collect();
    let restored = indexes.restore_for(tx, &parents).await?;
    if restored > 0 {
        steps.done(&format!(
            "{restored} foreign-key indexes made again for the last deletes"
        ));
    }
    delete_children_first(tx, catalog, internal, false, &mut counts).await?;
    steps.done("deleted: the rest");
    for c in counts.tables.values_mut() {
        c.unchanged = c.staged.saturating_sub(c.inserted + c.updated);
    }
    Ok(counts)
}
