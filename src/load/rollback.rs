//! Rollback: restore the destination tables from a load's backup, in one transaction.
//!
//! The restore takes the same path as the load (the backup is the clean copy, applied in
//! foreign-key order: rows added by the load deleted, changed rows put back, deleted rows
//! re-inserted), then re-inserts the dependents the load deleted, so nothing is deleted by a
//! cascade. Rows of other tables that now reference rows the restore would delete make it
//! refuse and list them. Dry run unless `--apply`.

use super::apply::{self, CleanRows};
use super::backup;
use super::deletes;
use super::dependents;
use super::guard::{self, GuardedRun, LogFields, Timeouts};
use super::reconcile::{Reconcile, TableCounts, UpdateMode};
use crate::catalog::Catalog;
use crate::connect::ConnInfo;
use crate::sql::{ident, ident_list};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tokio_postgres::{Client, Transaction};

/// Which load to undo, and how.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub conn: ConnInfo,
    /// The load's run id (`cleanmig status`).
    pub run_id: String,
    /// Commit; without it the rollback runs and rolls back.
    pub apply: bool,
    /// Also delete the auth users the load created, if they never signed in.
    pub remove_created_users: bool,
    pub timeouts: Timeouts,
}

#[tracing::instrument(name = "rollback", skip_all)]
pub async fn run(opts: &RollbackOptions) -> Result<()> {
    let backup = backup::schema_name(&opts.run_id)?;
    let run = GuardedRun::start(
        &opts.conn,
        "rollback",
        opts.apply,
        Some(&opts.run_id),
        opts.timeouts,
    )
    .await?;
    tracing::info!(
        "rollback {} of load {} ({}) on {}",
        run.run_id,
        opts.run_id,
        guard::mode(opts.apply),
        opts.conn
    );
    let mut client = opts.conn.connect().await?;
    let outcome = run.execute(rollback(&mut client, opts, &backup)).await;
    let fields = LogFields {
        backup_schema: Some(&backup),
        ..Default::default()
    };
    match outcome {
        Ok(report) => {
            let result = report.to_json(&run, opts, &backup);
            run.succeed(fields, &result).await?;
            report.print_summary(&run.run_id, opts);
            Ok(())
        }
        Err(err) => {
            let extra = json!({ "rolled_back_run_id": opts.run_id });
            Err(run.fail(err, fields, extra).await)
        }
    }
}

struct RollbackReport {
    tables: BTreeMap<String, TableCounts>,
    dependents_restored: Vec<Value>,
    users: CreatedUsers,
    validation: Value,
}

impl RollbackReport {
    fn to_json(&self, run: &GuardedRun, opts: &RollbackOptions, backup: &str) -> Value {
        let elapsed_ms = run.elapsed_ms();
        json!({
            "status": run.success_status(),
            "message": if opts.apply {
                format!("Destination tables restored to their state before load {}.", opts.run_id)
            } else {
                format!("Restore of load {} calculated but not applied. Run with --apply to apply it.", opts.run_id)
            },
            "run_id": run.run_id,
            "rolled_back_run_id": opts.run_id,
            "mode": guard::mode(opts.apply),
            "backup_schema": backup,
            "tables": self.tables,
            "dependents_restored": self.dependents_restored,
            "auth_users_removed": self.users.removed,
            "auth_users_kept_signed_in": self.users.signed_in,
            "auth_users_kept_not_asked": self.users.not_asked,
            "validation": self.validation,
            "execution_time_ms": elapsed_ms,
            "execution_time": format!("{:.3} s", elapsed_ms as f64 / 1000.0),
        })
    }

    fn print_summary(&self, run_id: &str, opts: &RollbackOptions) {
        tracing::info!(
            "rollback {run_id} of load {}: {}",
            opts.run_id,
            if opts.apply {
                "restored and committed"
            } else {
                "dry run, rolled back (nothing changed)"
            }
        );
        for (t, c) in &self.tables {
            tracing::info!(
                "  {t:<17} {:>7} re-inserted {:>7} restored {:>7} deleted {:>7} unchanged",
                c.inserted,
                c.updated,
                c.deleted,
                c.unchanged
            );
        }
        tracing::info!(
            "  auth users created by the load: {} removed, {} kept (signed in), {} kept (not asked: --remove-created-users)",
            self.users.removed, self.users.signed_in, self.users.not_asked
        );
    }
}

async fn rollback(
    client: &mut Client,
    opts: &RollbackOptions,
    backup: &str,
) -> Result<RollbackReport> {
    let tx = guard::begin(client, opts.timeouts).await?;
    if !backup::schema_exists(&tx, backup).await? {
        bail!(
            "no backup schema {backup} for run {}: only applied loads keep a backup (`cleanmig status` lists the runs)",
            opts.run_id
        );
    }
    let catalog = backup::catalog(&tx, backup).await?;
    guard::lock_tables(&tx, &catalog).await?;
    let clean = backed_up_rows(&tx, &catalog, backup).await?;
    let (internal, external) = deletes::split_internal(
        deletes::referencing(&tx, &catalog.reconciled_names()).await?,
        &catalog,
    );
    let found = dependents::find(&tx, &catalog, &external).await?;
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(|d| format!("  {d}")).collect();
        bail!(
            "rows of other tables reference rows the restore would delete:\n{}\nnothing was changed; remove or repoint them first",
            list.join("\n")
        );
    }
    let reconcilers = apply::reconcilers(&tx, &catalog, &clean, UpdateMode::Restore).await?;
    let mut parents = catalog.reconciled_names();
    if opts.remove_created_users {
        parents.push("auth.users".into());
    }
    let fk_indexes = super::fk_index::ForeignKeyIndexes::create(&tx, &parents).await?;
    if !fk_indexes.is_empty() {
        tracing::info!(
            "{} unindexed foreign keys indexed for the run",
            fk_indexes.len()
        );
    }
    let tables = apply::apply_in_fk_order(&tx, &catalog, &internal, &clean, &reconcilers).await?;
    let dependents_restored = restore_dependents(&tx, backup).await?;
    let users = created_users(&tx, backup, opts.remove_created_users).await?;
    fk_indexes.drop(&tx).await?;
    let validation = equals_backup(&tx, &catalog, &reconcilers).await?;
    let report = RollbackReport {
        tables: tables.tables,
        dependents_restored,
        users,
        validation,
    };
    guard::finish(tx, opts.apply).await?;
    Ok(report)
}

/// The backed-up rows of every reconciled table as its clean copy, with its delete set.
async fn backed_up_rows(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    backup: &str,
) -> Result<BTreeMap<String, CleanRows>> {
    let mut clean = BTreeMap::new();
    for table in catalog.reconciled() {
        let relation = format!("{}.{}", ident(backup), ident(&table.backup_table()));
        deletes::compute(tx, table, &relation).await?;
        let columns = super::reconcile::writable_columns(tx, &relation).await?;
        let rows = deletes::count(tx, &format!("SELECT count(*) FROM {relation}")).await?;
        clean.insert(
            table.name.clone(),
            CleanRows {
                relation,
                columns,
                rows,
                kept: 0,
            },
        );
    }
    Ok(clean)
}

/// Re-insert the dependents the load deleted with `--dependents delete`.
async fn restore_dependents(tx: &Transaction<'_>, backup: &str) -> Result<Vec<Value>> {
    let bk = ident(backup);
    let mut restored = Vec::new();
    let rows = tx
        .query(
            &format!("SELECT backup_table, target_table FROM {bk}.restore_dependents ORDER BY 1"),
            &[],
        )
        .await?;
    for row in rows {
        let backup_table: String = row.get(0);
        // `target_table` was written by the load as a quoted, qualified name.
        let target: String = row.get(1);
        let src = format!("{bk}.{}", ident(&backup_table));
        let cols = ident_list("", &super::reconcile::writable_columns(tx, &target).await?);
        let n = tx
            .execute(
                &format!(
                    "INSERT INTO {target} ({cols}) SELECT {cols} FROM {src} ON CONFLICT DO NOTHING"
                ),
                &[],
            )
            .await
            .with_context(|| format!("cannot restore the rows deleted from {target}"))?;
        restored.push(json!({"table": target.replace('"', ""), "rows": n}));
    }
    Ok(restored)
}

/// What became of the auth users the load created.
struct CreatedUsers {
    removed: u64,
    signed_in: u64,
    not_asked: u64,
}

/// Auth users the load created: removed only when asked, only if they never signed in and
/// nothing outside `auth` references them.
async fn created_users(tx: &Transaction<'_>, backup: &str, remove: bool) -> Result<CreatedUsers> {
    let bk = ident(backup);
    let row = tx
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE u.last_sign_in_at IS NOT NULL) \
                 FROM {bk}.created_auth_users c JOIN auth.users u ON u.id = c.id"
            ),
            &[],
        )
        .await?;
    let (created, signed_in): (i64, i64) = (row.get(0), row.get(1));
    if !remove {
        return Ok(CreatedUsers {
            removed: 0,
            signed_in: signed_in as u64,
            not_asked: (created - signed_in) as u64,
        });
    }
    let mut unreferenced = String::new();
    for fk in deletes::referencing(tx, &["auth.users".to_string()]).await? {
        if !fk.child_display.starts_with("auth.") {
            unreferenced.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM {} c WHERE {})",
                fk.child,
                fk.join()
            ));
        }
    }
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE cm_remove_users ON COMMIT DROP AS \
           SELECT p.id FROM {bk}.created_auth_users x JOIN auth.users p ON p.id = x.id \
           WHERE p.last_sign_in_at IS NULL{unreferenced}; \
         DELETE FROM auth.identities i USING cm_remove_users r WHERE i.user_id = r.id"
    ))
    .await?;
    let removed = tx
        .execute(
            "DELETE FROM auth.users u USING cm_remove_users r WHERE u.id = r.id",
            &[],
        )
        .await
        .context("cannot remove the auth users the load created")?;
    Ok(CreatedUsers {
        removed,
        signed_in: signed_in as u64,
        not_asked: 0,
    })
}

/// Validation: every reconciled table is exactly its backup.
async fn equals_backup(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    reconcilers: &[(String, Reconcile)],
) -> Result<Value> {
    let mut checks = Vec::new();
    for ((name, r), table) in reconcilers.iter().zip(catalog.reconciled()) {
        let cols = ident_list("", &r.insert_columns);
        let digest = |rel: &str| {
            format!("SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM (SELECT {cols} FROM {rel}) x")
        };
        let live: String = tx.query_one(&digest(&table.qualified()), &[]).await?.get(0);
        let saved: String = tx.query_one(&digest(&r.source), &[]).await?.get(0);
        checks.push(json!({"name": format!("{name} equals its backup"), "passed": live == saved}));
        if live != saved {
            bail!(crate::error::Refusal::ValidationFailed {
                checks: format!("{name} differs from its backup after the restore"),
                report: "the rollback's result (rolled back; nothing was changed)".into(),
            });
        }
    }
    Ok(json!({"passed": true, "checks": checks}))
}
