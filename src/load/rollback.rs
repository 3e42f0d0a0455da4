//! Rollback: restore the destination tables from a load's backup, in one transaction.
//!
//! The restore is set-based like the load (rows added by the load deleted, changed rows put
//! back, deleted rows re-inserted, dependents the load deleted re-inserted), so nothing is
//! deleted by a cascade. Rows of other tables that now reference rows the restore would delete
//! make it refuse and list them. Dry run unless `--apply`.

use super::oplog::{OpLog, RunEnd, RunStart};
use super::reconcile::{self, Reconcile, TableCounts, UpdateMode, DESTINATIONS};
use super::{backup_schema, begin_guarded, explain, new_run_id};
use crate::cli::{GlobalArgs, RollbackArgs};
use crate::connect::ConnInfo;
use crate::fingerprint::quote_ident;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tokio_postgres::Client;

const LOCK_TIMEOUT_MS: u64 = 5000;
const STATEMENT_TIMEOUT_MS: u64 = 300_000;

pub async fn run(_global: &GlobalArgs, args: &RollbackArgs) -> Result<()> {
    let backup = backup_schema(&args.run_id)?;
    let info = ConnInfo::resolve(args.db.database_url.as_deref())?;
    let run_id = new_run_id();
    let mode = if args.apply { "apply" } else { "dry_run" };
    tracing::info!(
        "rollback {run_id} of load {} ({mode}) on {info}",
        args.run_id
    );
    let mut client = info.connect().await?;
    let log = OpLog::start(
        &info,
        RunStart {
            run_id: &run_id,
            operation: "rollback",
            mode,
            target_run_id: Some(&args.run_id),
        },
    )
    .await?;
    let outcome = tokio::select! {
        r = rollback(&mut client, args, &backup) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C); the transaction was rolled back and nothing was changed")),
    };
    let outcome = outcome.map_err(|e| explain(e, LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS));
    let elapsed_ms = log.elapsed_ms();
    let (status, result, error) = match &outcome {
        Ok(report) => {
            let status = if args.apply {
                "success"
            } else {
                "dry_run_completed"
            };
            (
                status,
                json!({
                    "status": status,
                    "message": if args.apply {
                        format!("Destination tables restored to their state before load {}.", args.run_id)
                    } else {
                        format!("Restore of load {} calculated but not applied. Run with --apply to apply it.", args.run_id)
                    },
                    "run_id": run_id,
                    "rolled_back_run_id": args.run_id,
                    "mode": mode,
                    "backup_schema": backup,
                    "tables": report.tables,
                    "dependents_restored": report.dependents_restored,
                    "auth_users_removed": report.users_removed,
                    "auth_users_kept_signed_in": report.users_kept_signed_in,
                    "auth_users_kept_not_asked": report.users_not_asked,
                    "validation": report.validation,
                    "execution_time_ms": elapsed_ms,
                    "execution_time": format!("{:.3} s", elapsed_ms as f64 / 1000.0),
                }),
                None,
            )
        }
        Err(err) => {
            let message = format!("{err:#}");
            (
                "failed",
                json!({
                    "status": "failed",
                    "message": message,
                    "run_id": run_id,
                    "rolled_back_run_id": args.run_id,
                    "mode": mode,
                    "execution_time_ms": elapsed_ms,
                }),
                Some(message),
            )
        }
    };
    let logged = log
        .finish(RunEnd {
            status,
            approval_sha256: None,
            extract_fingerprint: None,
            approved_by: None,
            backup_schema: Some(&backup),
            counts: result.get("tables"),
            result: &result,
            error: error.as_deref(),
        })
        .await;
    println!("{}", serde_json::to_string_pretty(&result)?);
    match outcome {
        Ok(report) => {
            logged?;
            eprintln!(
                "rollback {run_id} of load {}: {}",
                args.run_id,
                if args.apply {
                    "restored and committed"
                } else {
                    "dry run, rolled back (nothing changed)"
                }
            );
            for (t, c) in &report.tables {
                eprintln!(
                    "  {t:<17} {:>7} re-inserted {:>7} restored {:>7} deleted {:>7} unchanged",
                    c.inserted, c.updated, c.deleted, c.unchanged
                );
            }
            eprintln!(
                "  auth users created by the load: {} removed, {} kept (signed in), {} kept (not asked: --remove-created-users)",
                report.users_removed, report.users_kept_signed_in, report.users_not_asked
            );
            Ok(())
        }
        Err(err) => {
            if let Err(e) = logged {
                tracing::error!("{e:#}");
            }
            Err(err)
        }
    }
}

struct RollbackReport {
    tables: BTreeMap<&'static str, TableCounts>,
    dependents_restored: Vec<Value>,
    users_removed: u64,
    users_kept_signed_in: u64,
    users_not_asked: u64,
    validation: Value,
}

async fn rollback(
    client: &mut Client,
    args: &RollbackArgs,
    backup: &str,
) -> Result<RollbackReport> {
    let tx = begin_guarded(client, LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS).await?;
    if !reconcile::schema_exists(&tx, backup).await? {
        bail!(
            "no backup schema {backup} for run {}: only applied loads keep a backup (`cleanmig status` lists the runs)",
            args.run_id
        );
    }
    let bk = quote_ident(backup);
    let source = |t: &str| format!("{bk}.{}", quote_ident(t));

    for dest in &DESTINATIONS {
        reconcile::compute_delete_set(&tx, dest, &source(dest.table)).await?;
    }
    let keys = reconcile::foreign_keys(&tx).await?;
    let dependents = reconcile::find_dependents(&tx, &keys).await?;
    if !dependents.is_empty() {
        let list = dependents
            .iter()
            .map(|d| format!("  {d}"))
            .collect::<Vec<_>>()
            .join("\n");
        bail!("rows of other tables reference rows the restore would delete:\n{list}\nnothing was changed; remove or repoint them first");
    }

    let mut reconcilers = BTreeMap::new();
    let mut counts: BTreeMap<&'static str, TableCounts> = BTreeMap::new();
    for dest in &DESTINATIONS {
        let src = source(dest.table);
        let cols = reconcile::writable_columns(&tx, &src).await?;
        let r = Reconcile::new(
            &tx,
            &dest.qualified(),
            &src,
            &cols,
            &[],
            UpdateMode::Restore,
        )
        .await?;
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {src}"), &[])
            .await?
            .get(0);
        counts.insert(
            dest.table,
            TableCounts {
                staged: rows as u64,
                ..Default::default()
            },
        );
        reconcilers.insert(dest.table, r);
    }
    // Rollback deletes from the destination tables and, when asked, auth.users.
    let mut parents: Vec<String> = DESTINATIONS.iter().map(|d| d.name()).collect();
    if args.remove_created_users {
        parents.push("auth.users".into());
    }
    let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
    let fk_indexes = reconcile::ForeignKeyIndexes::create(&tx, &parents).await?;
    if !fk_indexes.is_empty() {
        tracing::info!(
            "{} unindexed foreign keys indexed for the run",
            fk_indexes.len()
        );
    }
    let [profiles, transactions, enrollments] = &DESTINATIONS;
    counts.get_mut("enrollments").unwrap().deleted +=
        reconcile::delete_rows(&tx, enrollments, false).await?;
    counts.get_mut("unified_profiles").unwrap().deleted +=
        reconcile::delete_rows(&tx, profiles, true).await?;
    for dest in &DESTINATIONS {
        let r = &reconcilers[dest.table];
        let c = counts.get_mut(dest.table).unwrap();
        c.updated = r.update(&tx).await?;
        c.inserted = r.insert(&tx).await?;
        c.unchanged = c.staged.saturating_sub(c.updated + c.inserted);
    }
    counts.get_mut("transactions").unwrap().deleted +=
        reconcile::delete_rows(&tx, transactions, false).await?;
    counts.get_mut("unified_profiles").unwrap().deleted +=
        reconcile::delete_rows(&tx, profiles, false).await?;

    // Dependents the load deleted with --dependents delete.
    let mut dependents_restored = Vec::new();
    let restore = tx
        .query(
            &format!("SELECT backup_table, target_table FROM {bk}.restore_dependents ORDER BY 1"),
            &[],
        )
        .await?;
    for row in restore {
        let backup_table: String = row.get(0);
        let target: String = row.get(1);
        let src = source(&backup_table);
        let cols = reconcile::writable_columns(&tx, &target)
            .await?
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let n = tx
            .execute(
                &format!(
                    "INSERT INTO {target} ({cols}) SELECT {cols} FROM {src} ON CONFLICT DO NOTHING"
                ),
                &[],
            )
            .await
            .with_context(|| format!("cannot restore the rows deleted from {target}"))?;
        dependents_restored.push(json!({"table": target.replace('"', ""), "rows": n}));
    }

    // Auth users the load created: removed only when asked and only if they never signed in.
    let created: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM {bk}.created_auth_users c JOIN auth.users u ON u.id = c.id"
            ),
            &[],
        )
        .await?
        .get(0);
    let signed_in: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM {bk}.created_auth_users c JOIN auth.users u ON u.id = c.id \
                 WHERE u.last_sign_in_at IS NOT NULL"
            ),
            &[],
        )
        .await?
        .get(0);
    let mut users_removed = 0;
    if args.remove_created_users {
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE cm_remove_users ON COMMIT DROP AS \
               SELECT c.id FROM {bk}.created_auth_users c JOIN auth.users u ON u.id = c.id \
               WHERE u.last_sign_in_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM public.unified_profiles p WHERE p.id = c.id) \
                 AND NOT EXISTS (SELECT 1 FROM public.transactions t WHERE t.user_id = c.id); \
             DELETE FROM auth.identities i USING cm_remove_users r WHERE i.user_id = r.id"
        ))
        .await?;
        users_removed = tx
            .execute(
                "DELETE FROM auth.users u USING cm_remove_users r WHERE u.id = r.id",
                &[],
            )
            .await
            .context("cannot remove the auth users the load created")?;
    }
    let users_not_asked = if args.remove_created_users {
        0
    } else {
        (created - signed_in) as u64
    };

    fk_indexes.drop(&tx).await?;

    // Validation: every table is exactly its backup.
    let mut checks = Vec::new();
    for dest in &DESTINATIONS {
        let cols = reconcilers[dest.table]
            .insert_columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let digest = |rel: String| {
            format!("SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM (SELECT {cols} FROM {rel}) x")
        };
        let live: String = tx.query_one(&digest(dest.qualified()), &[]).await?.get(0);
        let saved: String = tx.query_one(&digest(source(dest.table)), &[]).await?.get(0);
        checks.push(
            json!({"name": format!("{} equals its backup", dest.table), "passed": live == saved}),
        );
        if live != saved {
            bail!(crate::error::Refusal::ValidationFailed {
                checks: format!("{} differs from its backup after the restore", dest.table),
                report: "the rollback's result (rolled back; nothing was changed)".into(),
            });
        }
    }
    let report = RollbackReport {
        tables: counts,
        dependents_restored,
        users_removed,
        users_kept_signed_in: signed_in as u64,
        users_not_asked,
        validation: json!({"passed": true, "checks": checks}),
    };
    if args.apply {
        tx.commit()
            .await
            .context("COMMIT failed; nothing was changed")?;
    } else {
        tx.rollback().await?;
    }
    Ok(report)
}
