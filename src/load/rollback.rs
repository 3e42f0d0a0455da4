//! Rollback: undo what one load (or rollback) wrote, and nothing else, in one transaction.
//!
//! For every row the run touched, three versions are compared: before the run (its backup),
//! what the run wrote (recorded in the backup at run time), and the live row now.
//! - live equals what the run wrote: the row is put back as it was before (or deleted, if the
//!   run inserted it); app-owned columns keep their live values;
//! - live differs (the app changed, deleted or re-created it since): the rollback refuses and
//!   lists every such row, and changes nothing;
//! - rows the run never touched, including everything created after it, stay as they are; if
//!   one of them references a row the rollback would delete, it refuses and lists them.
//!
//! The rollback takes the load's write path ([`super::apply`]) with the desired rows as the
//! clean copy, and keeps a backup of its own, so that a rollback can itself be rolled back.
//! Dry run unless `--apply`.

use super::apply::{self, CleanRows};
use super::backup;
use super::changes::{differing_values, row_changes, Changes, Versions};
use super::deletes;
use super::dependents;
use super::guard::{self, GuardedRun, LogFields, Timeouts};
use super::insert_checks::InsertChecks;
use super::reconcile::{Reconcile, TableCounts, UpdateMode};
use crate::catalog::Catalog;
use crate::connect::ConnInfo;
use crate::pg::Tx;
use crate::sql::{ident, ident_list};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio_postgres::{Client, Transaction};

/// Which load to undo, and how.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// Where the list of conflicts is written (it holds customer data).
    pub artifacts: PathBuf,
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
    let own_backup = backup::schema_name(&run.run_id)?;
    let mut client = opts.conn.connect().await?;
    let fields = LogFields {
        backup_schema: Some(&own_backup),
        ..Default::default()
    };
    let work = async {
        let (report, tx) = rollback(&mut client, opts, &backup, &own_backup, &run.run_id).await?;
        let result = report.to_json(&run, opts, &backup);
        run.commit(tx, fields.clone(), &result).await?;
        Ok((report, result))
    };
    let outcome = run.execute(work).await;
    match outcome {
        Ok((report, result)) => {
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

async fn rollback<'c>(
    client: &'c mut Client,
    opts: &RollbackOptions,
    backup: &str,
    own_backup: &str,
    run_id: &str,
) -> Result<(RollbackReport, Tx<'c>)> {
    let steps = super::Steps::start();
    let tx = guard::begin(client, opts.timeouts).await?;
    if !backup::schema_exists(&tx, backup).await? {
        bail!(
            "no backup schema {backup} for run {}: only applied loads that wrote something keep a backup (`cleanmig status` lists the runs)",
            opts.run_id
        );
    }
    let catalog = backup::catalog(&tx, backup).await?;
    if !backup::has_writes(&tx, backup, &catalog).await? {
        bail!("backup schema {backup} does not record what run {} wrote (it was made by an older cleanmig), so its writes cannot be told from the app's; restore by hand from its tables", opts.run_id);
    }
    guard::lock_tables(&tx, &catalog).await?;
    backup::analyze(&tx, backup, &catalog).await?;
    let report_path = opts
        .artifacts
        .join("rollback")
        .join(format!("{run_id}-conflicts.json"));
    refuse_conflicts(&tx, &catalog, backup, &report_path).await?;
    let clean = desired_rows(&tx, &catalog, backup).await?;
    let (internal, external) = deletes::split_internal(
        deletes::referencing(&tx, &catalog.reconciled_names()).await?,
        &catalog,
    );
    refuse_dependents(&tx, &catalog, &external, &internal).await?;
    backup::create(&tx, own_backup, &catalog).await?;
    let reconcilers = apply::reconcilers(&tx, &catalog, &clean, UpdateMode::Restore).await?;
    let mut parents = catalog.reconciled_names();
    if opts.remove_created_users {
        parents.push("auth.users".into());
    }
    let mut fk_indexes = super::fk_index::ForeignKeyIndexes::create(&tx, &parents).await?;
    if !fk_indexes.is_empty() {
        steps.done(&format!(
            "{} unindexed foreign keys indexed for the run",
            fk_indexes.len()
        ));
    }
    let keys = apply::DeleteKeys {
        internal: &internal,
        indexes: &mut fk_indexes,
    };
    let tables = apply::apply_in_fk_order(
        &tx,
        &catalog,
        keys,
        &clean,
        &reconcilers,
        apply::Inserts {
            adopt: &[],
            checks: &InsertChecks::per_row(),
        },
        &steps,
    )
    .await?;
    let dependents_restored = restore_dependents(&tx, backup).await?;
    if opts.remove_created_users {
        // Removing the users the load created deletes from auth.users, whose referencing
        // tables the run wrote meanwhile.
        fk_indexes
            .restore_for(&tx, &["auth.users".to_string()])
            .await?;
    }
    let users = created_users(&tx, backup, opts.remove_created_users).await?;
    backup::record_writes(&tx, own_backup, &catalog).await?;
    fk_indexes.drop(&tx).await?;
    let validation = validate(&tx, &reconcilers).await?;
    let report = RollbackReport {
        tables: tables.tables,
        dependents_restored,
        users,
        validation,
    };
    Ok((report, tx))
}

/// The columns compared to tell the app's writes from the run's: every column of the run's
/// record that a load may overwrite (not the key, `updated_at` or an app-owned one).
async fn compared_columns(
    tx: &Transaction<'_>,
    table: &crate::catalog::Table,
    written: &str,
) -> Result<Vec<String>> {
    let live = super::reconcile::writable_columns(tx, &table.qualified()).await?;
    Ok(super::reconcile::writable_columns(tx, written)
        .await?
        .into_iter()
        .filter(|c| live.contains(c) && table.may_overwrite(c))
        .collect())
}

/// Refuse, listing them, when rows the run wrote or deleted were changed, deleted or
/// re-created by the app since.
async fn refuse_conflicts(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    backup: &str,
    report: &std::path::Path,
) -> Result<()> {
    let mut found = Changes::default();
    for table in catalog.reconciled() {
        let bt = table.backup_table();
        let written = format!("{}.{}", ident(backup), ident(&backup::written_table(&bt)));
        let deleted = format!("{}.{}", ident(backup), ident(&backup::deleted_table(&bt)));
        let key = ident(&table.key);
        let live = table.qualified();
        let columns = compared_columns(tx, table, &written).await?;
        let name = table.display();
        let versions = Versions {
            table: &name,
            key: &table.key,
            known: &written,
            live: &live,
            columns: &columns,
            only: None,
            and: "true",
            other: None,
        };
        found.extend(differing_values(tx, &versions).await?);
        let gone = format!("NOT EXISTS (SELECT 1 FROM {live} l WHERE l.{key} = r.{key})");
        let what = "(row deleted since the load)";
        found.extend(row_changes(tx, &name, &table.key, &written, &gone, what).await?);
        let back = format!("EXISTS (SELECT 1 FROM {live} l WHERE l.{key} = r.{key})");
        let what = "(row re-created since the load)";
        found.extend(row_changes(tx, &name, &table.key, &deleted, &back, what).await?);
    }
    if found.is_empty() {
        return Ok(());
    }
    let written = found.write(report)?;
    Err(crate::error::Refusal::RollbackConflict {
        count: found.total,
        summary: found.summary(),
        artifact: written.display().to_string(),
    }
    .into())
}

/// Per reconciled table, the rows it must hold after the rollback (`cm_desired_<table>`):
/// every live row the run did not write, as it is; and the run's written or deleted rows as
/// they were before it, with their app-owned columns as they are live. Computes the delete
/// sets.
async fn desired_rows(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    backup: &str,
) -> Result<BTreeMap<String, CleanRows>> {
    let mut clean = BTreeMap::new();
    for table in catalog.reconciled() {
        let bt = table.backup_table();
        let before = format!("{}.{}", ident(backup), ident(&bt));
        let written = format!("{}.{}", ident(backup), ident(&backup::written_table(&bt)));
        let deleted = format!("{}.{}", ident(backup), ident(&backup::deleted_table(&bt)));
        let key = ident(&table.key);
        let live = super::reconcile::writable_columns(tx, &table.qualified()).await?;
        let saved = super::reconcile::writable_columns(tx, &before).await?;
        let restored: Vec<String> = live
            .iter()
            .map(|c| {
                let q = ident(c);
                let b = if saved.contains(c) {
                    format!("b.{q}")
                } else {
                    "NULL".into()
                };
                if table.app_owned.contains(c) || !saved.contains(c) {
                    format!("CASE WHEN t.{key} IS NULL THEN {b} ELSE t.{q} END")
                } else {
                    b
                }
            })
            .collect();
        let temp = ident(&format!("cm_desired_{}", table.extract_artifact()));
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE {temp} ON COMMIT DROP AS \
               SELECT {live_cols} FROM {q} t \
               WHERE NOT EXISTS (SELECT 1 FROM {written} w WHERE w.{key} = t.{key}) \
               UNION ALL \
               SELECT {restored} FROM {before} b LEFT JOIN {q} t ON t.{key} = b.{key} \
               WHERE b.{key} IN (SELECT w.{key} FROM {written} w UNION ALL SELECT d.{key} FROM {deleted} d); \
             ANALYZE {temp}",
            live_cols = ident_list("t.", &live),
            q = table.qualified(),
            restored = restored.join(", "),
        ))
        .await
        .with_context(|| format!("cannot compute the rows {} must hold", table.display()))?;
        deletes::compute(tx, table, &temp).await?;
        let rows = deletes::count(tx, &format!("SELECT count(*) FROM {temp}")).await?;
        clean.insert(
            table.name.clone(),
            CleanRows {
                relation: temp,
                columns: live,
                rows,
                kept: 0,
            },
        );
    }
    Ok(clean)
}

/// Refuse when rows the rollback leaves in place reference rows it would delete: rows of other
/// tables, and rows of the reconciled tables created or kept since the run.
async fn refuse_dependents(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    external: &[deletes::ForeignKey],
    internal: &[deletes::ForeignKey],
) -> Result<()> {
    let mut found = dependents::find(tx, catalog, external).await?;
    for fk in internal {
        let (Some(child), Some(parent)) = (catalog.get(&fk.child_display), catalog.get(&fk.parent))
        else {
            continue;
        };
        // Children that are deleted too go first; only those that stay count.
        let n = deletes::count(
            tx,
            &format!(
                "SELECT count(*) FROM {c_table} c \
                 WHERE NOT EXISTS (SELECT 1 FROM {c_set} x WHERE x.key = c.{c_key}) \
                   AND EXISTS (SELECT 1 FROM {p_table} p WHERE {join} AND {deleted})",
                c_table = fk.child,
                c_set = ident(&child.delete_set()),
                c_key = ident(&child.key),
                p_table = parent.qualified(),
                join = fk.join(),
                deleted = deletes::in_delete_set(parent),
            ),
        )
        .await?;
        if n > 0 {
            found.push(dependents::Dependents {
                table: fk.child_display.clone(),
                constraint: fk.name.clone(),
                references: parent.name.clone(),
                rows: n,
                sample_keys: Vec::new(),
                on_delete_cascade: fk.on_delete_cascade,
            });
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(|d| format!("  {d}")).collect();
    bail!(
        "rows that the rollback leaves in place reference rows it would delete:\n{}\nnothing was changed; remove or repoint them first",
        list.join("\n")
    );
}

/// Validation: every row the rollback put in place is as intended.
async fn validate(tx: &Transaction<'_>, reconcilers: &[(String, Reconcile)]) -> Result<Value> {
    let mut checks = Vec::new();
    for (name, r) in reconcilers {
        let failing = r.mismatches(tx).await?;
        checks.push(json!({"name": format!("{name} holds the restored rows"), "passed": failing == 0, "failing": failing}));
        if failing != 0 {
            bail!(crate::error::Refusal::ValidationFailed {
                checks: format!(
                    "{name}: {failing} rows differ from what the rollback put in place"
                ),
                report: "the rollback's result (rolled back; nothing was changed)".into(),
            });
        }
    }
    Ok(json!({"passed": true, "checks": checks}))
}

/// Re-insert the dependents the load deleted with `--dependents delete`.
async fn restore_dependents(tx: &Transaction<'_>, backup: &str) -> Result<Vec<Value>> {
    let bk = ident(backup);
    let mut restored = Vec::new();
    let rows = crate::pg::query(
        tx,
        &format!("SELECT backup_table, target_table FROM {bk}.restore_dependents ORDER BY 1"),
        &[],
        &[],
    )
    .await?;
    for row in rows {
        let backup_table: String = row.get(0);
        // `target_table` was written by the load as a quoted, qualified name.
        let target: String = row.get(1);
        let src = format!("{bk}.{}", ident(&backup_table));
        let cols = ident_list("", &super::reconcile::writable_columns(tx, &target).await?);
        let n = crate::pg::execute(
            tx,
            &format!(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM {src} ON CONFLICT DO NOTHING"
            ),
            &[],
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
    let row = crate::pg::query_one(
        tx,
        &format!(
            "SELECT count(*), count(*) FILTER (WHERE u.last_sign_in_at IS NOT NULL) \
                 FROM {bk}.created_auth_users c JOIN auth.users u ON u.id = c.id"
        ),
        &[],
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
    let removed = crate::pg::execute(
        tx,
        "DELETE FROM auth.users u USING cm_remove_users r WHERE u.id = r.id",
        &[],
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
