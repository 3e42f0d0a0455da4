//! Load: copy the approved artifacts into Postgres and reconcile, in one transaction.
//!
//! The load applies no business rule: the staged files are the complete clean contents of
//! `unified_profiles`, `transactions` and `enrollments` plus the auth users and identities to
//! create; the load copies them into temporary tables and reconciles with set-based SQL.
//! Dry run by default (everything runs, then rolls back); `--apply` commits.

mod drift;
pub mod oplog;
pub mod reconcile;
pub mod rollback;
mod stage;
pub mod status;

use crate::approve::{approval_sha256, Approval};
use crate::artifacts::{Manifest, EXTRACT_DIR, STAGE_DIR};
use crate::cli::{DependentsPolicy, GlobalArgs, LoadArgs};
use crate::connect::ConnInfo;
use crate::error::Refusal;
use anyhow::{anyhow, bail, Context, Result};
use oplog::{OpLog, RunEnd, RunStart};
use reconcile::{Reconcile, TableCounts, UpdateMode, DESTINATIONS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use tokio_postgres::{Client, Transaction};

/// Advisory lock key shared by load and rollback ("cleanmig" in ASCII): a second run is
/// refused at once instead of queueing behind the first.
pub const ADVISORY_LOCK_KEY: i64 = 0x636c_6561_6e6d_6967;

/// The `transactions` columns the plan adds when absent (`sql/align.sql`).
pub const ALIGNED_COLUMNS: [&str; 6] = [
    "api_source",
    "last_api_sync_at",
    "api_sync_version",
    "processed_at",
    "fiscal_year",
    "fiscal_quarter",
];

/// A run id: UTC time plus a random suffix, e.g. `20261125T131500Z-3f9a1c`.
pub fn new_run_id() -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{}-{suffix}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"))
}

/// Name of the schema holding a load run's backup.
pub fn backup_schema(run_id: &str) -> Result<String> {
    if run_id.is_empty()
        || !run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("`{run_id}` is not a run id (see `cleanmig status` for the last runs)");
    }
    Ok(format!(
        "cleanmig_backup_{}",
        run_id.to_lowercase().replace('-', "_")
    ))
}

/// Start a transaction with the run's timeouts and the advisory lock, and lock the destination
/// tables against writes.
pub async fn begin_guarded<'a>(
    client: &'a mut Client,
    lock_timeout_ms: u64,
    statement_timeout_ms: u64,
) -> Result<Transaction<'a>> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{lock_timeout_ms}ms'; \
         SET LOCAL statement_timeout = '{statement_timeout_ms}ms'; \
         SET LOCAL idle_in_transaction_session_timeout = '{statement_timeout_ms}ms'"
    ))
    .await?;
    let locked: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1)",
            &[&ADVISORY_LOCK_KEY],
        )
        .await?
        .get(0);
    if !locked {
        let holder = tx
            .query_opt(
                "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
                        coalesce(to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '') \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted \
                   AND ((l.classid::int8 << 32) | l.objid::int8) = $1 LIMIT 1",
                &[&ADVISORY_LOCK_KEY],
            )
            .await
            .ok()
            .flatten()
            .map(|r| {
                format!(
                    " (backend pid {}, {} as {}, since {} UTC)",
                    r.get::<_, i32>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3)
                )
            })
            .unwrap_or_default();
        bail!("another cleanmig load or rollback is running on this database{holder}; this run is refused rather than queued. Wait for it to finish (`cleanmig status`) and run again");
    }
    // The app must not write the destination tables between the drift check and the commit:
    // reads go on, writes wait (or the load gives up after lock_timeout).
    tx.batch_execute(
        "LOCK TABLE public.unified_profiles, public.transactions, public.enrollments \
         IN SHARE ROW EXCLUSIVE MODE",
    )
    .await
    .context("cannot lock the destination tables against writes")?;
    Ok(tx)
}

/// Turn lock and statement timeouts into messages that say what to do.
pub fn explain(
    err: anyhow::Error,
    lock_timeout_ms: u64,
    statement_timeout_ms: u64,
) -> anyhow::Error {
    let code = err
        .chain()
        .find_map(|e| e.downcast_ref::<tokio_postgres::Error>())
        .and_then(|e| e.code().cloned());
    match code {
        Some(c) if c == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE => err.context(format!(
            "a table is locked by another session and the lock was not granted within {lock_timeout_ms} ms (--lock-timeout-ms); nothing was changed. Stop the writers (maintenance mode) or find the holder in pg_locks/pg_stat_activity, then run again"
        )),
        Some(c) if c == tokio_postgres::error::SqlState::QUERY_CANCELED => err.context(format!(
            "a statement ran longer than {statement_timeout_ms} ms (--statement-timeout-ms) and was cancelled; nothing was changed"
        )),
        _ => err,
    }
}

/// What the artifacts directory holds for a load.
struct Inputs {
    approval: Approval,
    approval_sha256: String,
    extract: Manifest,
    stage: Manifest,
}

fn read_inputs(artifacts_dir: &Path) -> Result<Inputs> {
    let approval = Approval::read(artifacts_dir)?;
    let approval_sha256 = approval_sha256(artifacts_dir)?;
    approval.verify(artifacts_dir)?;
    let stage = Manifest::read(&artifacts_dir.join(STAGE_DIR))?;
    let extract = Manifest::read(&artifacts_dir.join(EXTRACT_DIR))?;
    if stage.fingerprint != approval.fingerprint || extract.fingerprint != approval.fingerprint {
        return Err(Refusal::ArtifactModified {
            artifact: format!("{STAGE_DIR}/manifest.json"),
        }
        .into());
    }
    Ok(Inputs {
        approval,
        approval_sha256,
        extract,
        stage,
    })
}

pub async fn run(global: &GlobalArgs, args: &LoadArgs) -> Result<()> {
    let info = ConnInfo::resolve(args.db.database_url.as_deref())?;
    let mode = if args.apply { "apply" } else { "dry_run" };
    let run_id = new_run_id();
    tracing::info!(
        "load {run_id} ({}) into {info}",
        if args.apply { "apply" } else { "dry run" }
    );
    let mut client = info.connect().await?;
    let log = OpLog::start(
        &info,
        RunStart {
            run_id: &run_id,
            operation: "load",
            mode,
            target_run_id: None,
        },
    )
    .await?;

    let (outcome, inputs) = match read_inputs(&global.artifacts) {
        Ok(inputs) => {
            let outcome = tokio::select! {
                r = load(&mut client, &global.artifacts, &inputs, args, &run_id) => r,
                _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C); the transaction was rolled back and nothing was changed")),
            };
            (outcome, Some(inputs))
        }
        Err(e) => (Err(e), None),
    };
    let outcome = outcome.map_err(|e| explain(e, args.lock_timeout_ms, args.statement_timeout_ms));
    let elapsed_ms = log.elapsed_ms();
    let approved_by = inputs.as_ref().map(|i| i.approval.approved_by.as_str());
    let approval_hash = inputs.as_ref().map(|i| i.approval_sha256.as_str());
    let fingerprint = inputs.as_ref().map(|i| i.approval.fingerprint.as_str());
    match outcome {
        Ok(report) => {
            let status = if args.apply {
                "success"
            } else {
                "dry_run_completed"
            };
            let result = report.to_json(&run_id, status, args.apply, approval_hash, elapsed_ms);
            log.finish(RunEnd {
                status,
                approval_sha256: approval_hash,
                extract_fingerprint: fingerprint,
                approved_by,
                backup_schema: args.apply.then_some(report.backup_schema.as_str()),
                counts: Some(&result["tables"]),
                result: &result,
                error: None,
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&result)?);
            report.print_summary(&run_id, args.apply, elapsed_ms);
            Ok(())
        }
        Err(err) => {
            let message = format!("{err:#}");
            let result = json!({
                "status": "failed",
                "message": message,
                "run_id": run_id,
                "mode": mode,
                "approval_sha256": approval_hash,
                "execution_time_ms": elapsed_ms,
                "execution_time": format!("{:.3} s", elapsed_ms as f64 / 1000.0),
            });
            if let Err(log_err) = log
                .finish(RunEnd {
                    status: "failed",
                    approval_sha256: approval_hash,
                    extract_fingerprint: fingerprint,
                    approved_by,
                    backup_schema: None,
                    counts: None,
                    result: &result,
                    error: Some(&message),
                })
                .await
            {
                tracing::error!("{log_err:#}");
            }
            println!("{}", serde_json::to_string_pretty(&result)?);
            eprintln!("load {run_id}: failed; the database is unchanged (the run is logged in population_operation_log)");
            Err(err)
        }
    }
}

/// What a load did (or, in a dry run, would do).
pub struct Report {
    pub tables: BTreeMap<&'static str, TableCounts>,
    pub auth_users_created: u64,
    pub auth_identities_created: u64,
    pub dependents_policy: DependentsPolicy,
    pub dependents: Vec<reconcile::Dependents>,
    pub dependents_deleted: Vec<(String, u64)>,
    pub validation: Value,
    pub backup_schema: String,
}

impl Report {
    fn to_json(
        &self,
        run_id: &str,
        status: &str,
        applied: bool,
        approval_sha256: Option<&str>,
        elapsed_ms: i64,
    ) -> Value {
        json!({
            "status": status,
            "message": if applied {
                "Clean data population completed successfully."
            } else {
                "Changes were calculated but not applied. Run `cleanmig load --apply` to apply them."
            },
            "run_id": run_id,
            "mode": if applied { "apply" } else { "dry_run" },
            "approval_sha256": approval_sha256,
            "backup_schema": if applied { Some(&self.backup_schema) } else { None },
            "tables": self.tables,
            "auth_users_created": self.auth_users_created,
            "auth_identities_created": self.auth_identities_created,
            "dependents": {
                "policy": format!("{:?}", self.dependents_policy).to_lowercase(),
                "found": self.dependents,
                "deleted": self.dependents_deleted.iter().map(|(t, n)| json!({"table": t, "rows": n})).collect::<Vec<_>>(),
            },
            "validation": self.validation,
            "execution_time_ms": elapsed_ms,
            "execution_time": format!("{:.3} s", elapsed_ms as f64 / 1000.0),
        })
    }

    fn print_summary(&self, run_id: &str, applied: bool, elapsed_ms: i64) {
        use crate::artifacts::human_count as h;
        eprintln!(
            "load {run_id}: {} in {:.2} s",
            if applied {
                "applied and committed"
            } else {
                "dry run, rolled back (nothing changed)"
            },
            elapsed_ms as f64 / 1000.0
        );
        for (table, c) in &self.tables {
            eprintln!(
                "  {table:<17} {:>9} inserted {:>9} updated {:>9} deleted {:>9} unchanged{}",
                h(c.inserted),
                h(c.updated),
                h(c.deleted),
                h(c.unchanged),
                if c.kept > 0 {
                    format!(" {:>9} kept", h(c.kept))
                } else {
                    String::new()
                }
            );
        }
        eprintln!(
            "  auth.users        {:>9} created; auth.identities {} created",
            h(self.auth_users_created),
            h(self.auth_identities_created)
        );
        for (t, n) in &self.dependents_deleted {
            eprintln!("  dependents        {:>9} deleted from {t}", h(*n));
        }
        eprintln!(
            "  validation passed; backup schema {}",
            if applied {
                self.backup_schema.as_str()
            } else {
                "(rolled back)"
            }
        );
    }
}

/// The whole load in one transaction; commits only with `--apply` and a passing validation.
async fn load(
    client: &mut Client,
    artifacts_dir: &Path,
    inputs: &Inputs,
    args: &LoadArgs,
    run_id: &str,
) -> Result<Report> {
    let stage_dir = artifacts_dir.join(STAGE_DIR);
    let backup = backup_schema(run_id)?;
    let started = std::time::Instant::now();
    let step = |what: &str| tracing::info!("{what} ({:.2} s)", started.elapsed().as_secs_f64());
    let tx = begin_guarded(client, args.lock_timeout_ms, args.statement_timeout_ms).await?;
    step("transaction started, advisory lock held, destination tables locked against writes");

    // 1. Sources unchanged since extraction.
    drift::check_sources(&tx, &inputs.extract).await?;
    step("sources unchanged since extraction");

    // 2. Schema alignment (idempotent).
    let present: i64 = tx
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.transactions'::regclass \
             AND NOT attisdropped AND attname = ANY ($1::text[])",
            &[&ALIGNED_COLUMNS.to_vec()],
        )
        .await?
        .get(0);
    if present < ALIGNED_COLUMNS.len() as i64 {
        tx.batch_execute(include_str!("sql/align.sql"))
            .await
            .context("cannot add the missing transactions columns")?;
    }

    // 3. Staged artifacts into temporary tables (binary COPY).
    let staged_path = |name: &str| -> Option<std::path::PathBuf> {
        inputs
            .stage
            .artifacts
            .get(name)
            .map(|e| stage_dir.join(&e.file))
    };
    let mut staged = BTreeMap::new();
    for (artifact, like, temp, required) in [
        ("auth_users", "auth.users", "cm_stage_auth_users", false),
        (
            "auth_identities",
            "auth.identities",
            "cm_stage_auth_identities",
            false,
        ),
        (
            "profiles",
            "public.unified_profiles",
            "cm_stage_unified_profiles",
            true,
        ),
        (
            "transactions",
            "public.transactions",
            "cm_stage_transactions",
            true,
        ),
        (
            "enrollments",
            "public.enrollments",
            "cm_stage_enrollments",
            true,
        ),
    ] {
        let s = match staged_path(artifact) {
            Some(path) => stage::copy_into_temp(&tx, &path, like, temp).await?,
            None if required => bail!(
                "{STAGE_DIR}/manifest.json lists no `{artifact}` artifact; re-run `cleanmig transform`"
            ),
            None => stage::empty_temp(&tx, like, temp).await?,
        };
        tracing::info!(
            "staged {artifact}: {} rows",
            crate::artifacts::human_count(s.rows)
        );
        staged.insert(artifact, s);
    }

    // 4. Destination tables gained or lost no rows since extraction.
    drift::check_destinations(&tx, artifacts_dir, &inputs.extract).await?;
    step("destination tables gained or lost no rows since extraction");

    // 5. For the validation pack: the ids of existing auth users and identities. The load only
    // inserts there; a changed row would carry this transaction's id in xmin.
    tx.batch_execute(
        "CREATE TEMP TABLE cm_auth_users_before ON COMMIT DROP AS SELECT id FROM auth.users; \
         CREATE TEMP TABLE cm_auth_identities_before ON COMMIT DROP AS SELECT id FROM auth.identities; \
         ANALYZE cm_auth_users_before; ANALYZE cm_auth_identities_before",
    )
    .await?;

    // 6. What would be deleted, and who references it.
    for dest in &DESTINATIONS {
        reconcile::compute_delete_set(&tx, dest, &format!("cm_stage_{}", dest.table)).await?;
    }
    let keys = reconcile::foreign_keys(&tx).await?;
    let mut dependents = reconcile::find_dependents(&tx, &keys).await?;
    match args.dependents {
        DependentsPolicy::Refuse if !dependents.is_empty() => {
            let list = dependents
                .iter()
                .map(|d| format!("  {d}"))
                .collect::<Vec<_>>()
                .join("\n");
            bail!(
                "rows of other tables reference rows the load would delete:\n{list}\nnothing was changed. Choose `--dependents delete` (delete those rows too, backed up for rollback) or `--dependents keep` (keep the referenced profiles and transactions)"
            );
        }
        DependentsPolicy::Keep => {
            reconcile::keep_referenced(&tx, &keys).await?;
            dependents = reconcile::find_dependents(&tx, &keys).await?;
            if !dependents.is_empty() {
                bail!(
                    "--dependents keep could not keep every referenced row: {}",
                    dependents[0]
                );
            }
        }
        _ => {}
    }
    let mut kept = BTreeMap::new();
    for dest in &DESTINATIONS {
        let n: i64 = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM {t} t WHERE NOT EXISTS (SELECT 1 FROM cm_stage_{name} s WHERE s.id = t.id) \
                     AND NOT EXISTS (SELECT 1 FROM {set} d WHERE d.id = t.id)",
                    t = dest.qualified(),
                    name = dest.table,
                    set = dest.delete_set()
                ),
                &[],
            )
            .await?
            .get(0);
        kept.insert(dest.table, n as u64);
    }

    // 7. Backup of the destination tables under this run's id.
    reconcile::create_backup(&tx, &backup).await?;
    step(&format!("backup in schema {backup}"));
    let parents: Vec<String> = DESTINATIONS.iter().map(|d| d.name()).collect();
    let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
    let fk_indexes = reconcile::ForeignKeyIndexes::create(&tx, &parents).await?;
    if !fk_indexes.is_empty() {
        step(&format!(
            "{} unindexed foreign keys indexed for the run",
            fk_indexes.len()
        ));
    }
    let dependents_deleted = if args.dependents == DependentsPolicy::Delete {
        reconcile::delete_dependents(&tx, &keys, &backup).await?
    } else {
        Vec::new()
    };

    // 8. Auth users and identities that do not exist yet. Existing ones are never touched.
    let (auth_users_created, auth_identities_created) =
        create_auth_users(&tx, &staged, &backup).await?;

    // 9. Reconcile in foreign-key order.
    let mut reconcilers = BTreeMap::new();
    for dest in &DESTINATIONS {
        let s = &staged[dest.artifact];
        let r = Reconcile::new(
            &tx,
            &dest.qualified(),
            &s.temp,
            &s.columns,
            dest.app_owned,
            UpdateMode::Load,
        )
        .await?;
        reconcilers.insert(dest.table, r);
    }
    let [profiles, transactions, enrollments] = &DESTINATIONS;
    let mut counts: BTreeMap<&'static str, TableCounts> = BTreeMap::new();
    for dest in &DESTINATIONS {
        counts.insert(
            dest.table,
            TableCounts {
                staged: staged[dest.artifact].rows,
                kept: kept[dest.table],
                ..Default::default()
            },
        );
    }
    // Children that go first, then profiles nothing points at (frees their unique emails).
    counts.get_mut("enrollments").unwrap().deleted +=
        reconcile::delete_rows(&tx, enrollments, false).await?;
    counts.get_mut("unified_profiles").unwrap().deleted +=
        reconcile::delete_rows(&tx, profiles, true).await?;
    for dest in &DESTINATIONS {
        let r = &reconcilers[dest.table];
        let c = counts.get_mut(dest.table).unwrap();
        c.updated = r.update(&tx).await?;
        c.inserted = r.insert(&tx).await?;
    }
    counts.get_mut("transactions").unwrap().deleted +=
        reconcile::delete_rows(&tx, transactions, false).await?;
    counts.get_mut("unified_profiles").unwrap().deleted +=
        reconcile::delete_rows(&tx, profiles, false).await?;
    for dest in &DESTINATIONS {
        let c = counts.get_mut(dest.table).unwrap();
        c.unchanged = c.staged.saturating_sub(c.inserted + c.updated);
    }

    fk_indexes.drop(&tx).await?;
    step("reconciled");

    // 10. Validation pack on the real tables, inside the transaction.
    let validation = validate(&tx, &counts, &reconcilers).await?;
    step("validation pack passed");

    let report = Report {
        tables: counts,
        auth_users_created,
        auth_identities_created,
        dependents_policy: args.dependents,
        dependents,
        dependents_deleted,
        validation,
        backup_schema: backup,
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

async fn create_auth_users(
    tx: &Transaction<'_>,
    staged: &BTreeMap<&str, stage::Staged>,
    backup: &str,
) -> Result<(u64, u64)> {
    let users = &staged["auth_users"];
    if users.columns.is_empty() {
        return Ok((0, 0));
    }
    // An email that already has an auth user under another id is a conflict to resolve, not
    // something to paper over.
    let conflicts = tx
        .query(
            "SELECT s.email::text || ' (staged ' || s.id::text || ', existing ' || u.id::text || ')' \
             FROM cm_stage_auth_users s JOIN auth.users u ON lower(u.email) = lower(s.email) AND u.id <> s.id \
             ORDER BY 1 LIMIT 5",
            &[],
        )
        .await?;
    if !conflicts.is_empty() {
        bail!(
            "auth users to create already exist under another id: {}; re-run `cleanmig extract`, `cleanmig transform` and `cleanmig approve`",
            conflicts.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("; ")
        );
    }
    let user_cols = Reconcile::new(
        tx,
        "auth.users",
        &users.temp,
        &users.columns,
        &[],
        UpdateMode::Restore,
    )
    .await?
    .insert_columns;
    let cols = user_cols
        .iter()
        .map(|c| crate::fingerprint::quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let created = tx
        .execute(
            &format!(
                "WITH created AS (INSERT INTO auth.users ({cols}) SELECT {cols} FROM cm_stage_auth_users s \
                   WHERE NOT EXISTS (SELECT 1 FROM auth.users u WHERE u.id = s.id) RETURNING id) \
                 INSERT INTO {b}.created_auth_users SELECT id FROM created",
                b = crate::fingerprint::quote_ident(backup)
            ),
            &[],
        )
        .await
        .context("cannot create the auth users")?;
    let ids = &staged["auth_identities"];
    let mut identities = 0;
    if !ids.columns.is_empty() {
        let id_cols = Reconcile::new(
            tx,
            "auth.identities",
            &ids.temp,
            &with_id(&ids.columns),
            &[],
            UpdateMode::Restore,
        )
        .await?
        .insert_columns
        .into_iter()
        .filter(|c| ids.columns.contains(c))
        .map(|c| crate::fingerprint::quote_ident(&c))
        .collect::<Vec<_>>()
        .join(", ");
        identities = tx
            .execute(
                &format!(
                    "INSERT INTO auth.identities ({id_cols}) SELECT {id_cols} FROM cm_stage_auth_identities s \
                     WHERE NOT EXISTS (SELECT 1 FROM auth.identities i \
                                       WHERE i.provider = s.provider AND i.provider_id = s.provider_id)"
                ),
                &[],
            )
            .await
            .context("cannot create the auth identities")?;
    }
    Ok((created, identities))
}

/// Identities may be staged without `id` (the table's default makes one).
fn with_id(columns: &[String]) -> Vec<String> {
    let mut c = columns.to_vec();
    if !c.iter().any(|x| x == "id") {
        c.push("id".into());
    }
    c
}

async fn validate(
    tx: &Transaction<'_>,
    counts: &BTreeMap<&'static str, TableCounts>,
    reconcilers: &BTreeMap<&'static str, Reconcile>,
) -> Result<Value> {
    let expected = |t: &str| counts[t].staged + counts[t].kept;
    let sql = include_str!("sql/validation_checks.sql")
        .replace(
            "{expected_profiles}",
            &expected("unified_profiles").to_string(),
        )
        .replace(
            "{expected_transactions}",
            &expected("transactions").to_string(),
        )
        .replace(
            "{expected_enrollments}",
            &expected("enrollments").to_string(),
        );
    let mut checks = Vec::new();
    for row in tx
        .query(&sql, &[])
        .await
        .context("validation pack failed to run")?
    {
        let name: String = row.get(0);
        let failing: i64 = row.get(1);
        checks.push((name, failing));
    }
    for (table, r) in reconcilers {
        checks.push((
            format!("every staged {table} row is loaded as approved"),
            r.mismatches(tx).await?,
        ));
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
    let value = json!({
        "passed": failed.is_empty(),
        "checks": checks.iter().map(|(name, n)| json!({"name": name, "passed": *n == 0, "failing": n})).collect::<Vec<_>>(),
        "figures": figures,
    });
    if !failed.is_empty() {
        return Err(Refusal::ValidationFailed {
            checks: failed.join(", "),
            report: "the load's validation (rolled back; nothing was changed)".into(),
        }
        .into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_schema_is_derived_from_the_run_id_and_rejects_anything_else() {
        let id = new_run_id();
        let schema = backup_schema(&id).unwrap();
        assert!(schema.starts_with("cleanmig_backup_"), "{schema}");
        assert!(schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert!(backup_schema("x; DROP TABLE users").is_err());
        assert!(backup_schema("").is_err());
    }
}
