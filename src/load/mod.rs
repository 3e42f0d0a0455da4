//! Load: copy the approved artifacts into Postgres and reconcile, in one transaction.
//!
//! The load applies no business rule: the staged files are the complete clean contents of the
//! catalogue's reconciled tables plus the auth users and identities to create; the load copies
//! them into temporary tables and reconciles with set-based SQL. Dry run by default (everything
//! runs, then rolls back); `--apply` commits. [`load`] reads like the runbook: each step is a
//! function of its own module.

mod applied;
mod apply;
mod auth;
pub mod backup;
mod changes;
mod deletes;
mod dependents;
mod drift;
mod fk_index;
pub mod guard;
pub mod insert_checks;
pub mod oplog;
pub mod reconcile;
pub mod rollback;
mod stage;
pub mod status;
mod validate;

use crate::approve::{approval_sha256, Approval};
use crate::artifacts::{Manifest, EXTRACT_DIR, STAGE_DIR};
use crate::catalog::Catalog;
use crate::connect::ConnInfo;
use crate::error::Refusal;
use crate::pg::Tx;
use anyhow::{bail, Context, Result};
use apply::{ApplyCounts, CleanRows};
use guard::{GuardedRun, LogFields};
use reconcile::UpdateMode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

pub use guard::{Timeouts, ADVISORY_LOCK_KEY};

/// What to do with rows of other tables that reference rows about to be deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DependentsPolicy {
    /// Stop and list them.
    #[default]
    Refuse,
    /// Delete them too (backed up for rollback).
    Delete,
    /// Keep the rows they reference.
    Keep,
}

/// What `cleanmig load` loads, where, and how.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub artifacts: PathBuf,
    pub conn: ConnInfo,
    /// Commit; without it the load runs completely and rolls back.
    pub apply: bool,
    pub dependents: DependentsPolicy,
    pub timeouts: Timeouts,
}

/// What the artifacts directory holds for a load.
struct Inputs {
    approval: Approval,
    approval_sha256: String,
    extract: Manifest,
    stage: Manifest,
}

impl Inputs {
    fn log_fields(&self) -> LogFields<'_> {
        LogFields {
            approval_sha256: Some(&self.approval_sha256),
            extract_fingerprint: Some(&self.approval.fingerprint),
            approved_by: Some(&self.approval.approved_by),
            backup_schema: None,
        }
    }
}

fn read_inputs(artifacts_dir: &Path) -> Result<Inputs> {
    let approval = Approval::read(artifacts_dir)?;
    let approval_sha256 = approval_sha256(artifacts_dir)?;
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

#[tracing::instrument(name = "load", skip_all)]
pub async fn run(opts: &LoadOptions) -> Result<()> {
    let run = GuardedRun::start(&opts.conn, "load", opts.apply, None, opts.timeouts).await?;
    tracing::info!(
        "load {} ({}) into {}",
        run.run_id,
        if opts.apply { "apply" } else { "dry run" },
        opts.conn
    );
    let mut client = opts.conn.connect().await?;
    let (outcome, inputs) = match read_inputs(&opts.artifacts) {
        Ok(inputs) => {
            let work = async {
                let (report, tx) = load(&mut client, &inputs, opts, &run.run_id).await?;
                let result = report.to_json(&run, Some(&inputs.approval_sha256));
                run.commit(tx, report.log_fields(&inputs, opts.apply), &result)
                    .await?;
                Ok((report, result))
            };
            (run.execute(work).await, Some(inputs))
        }
        Err(e) => (Err(e), None),
    };
    let fields = inputs.as_ref().map(Inputs::log_fields).unwrap_or_default();
    match outcome {
        Ok((report, result)) => {
            run.succeed(
                LogFields {
                    backup_schema: report.backup_schema(opts.apply),
                    ..fields
                },
                &result,
            )
            .await?;
            report.print_summary(&run.run_id, opts.apply, run.elapsed_ms());
            Ok(())
        }
        Err(err) => {
            let extra = json!({ "approval_sha256": fields.approval_sha256 });
            Err(run.fail(err, fields, extra).await)
        }
    }
}

/// What a load did (or, in a dry run, would do).
pub struct Report {
    pub tables: ApplyCounts,
    pub auth_users_created: u64,
    pub auth_identities_created: u64,
    pub dependents_policy: DependentsPolicy,
    pub dependents: Vec<dependents::Dependents>,
    pub dependents_deleted: Vec<(String, u64)>,
    pub validation: Value,
    /// The backup schema; none when nothing was to be written.
    pub backup_schema: Option<String>,
    /// The run that left every table as this approval wants it, when this one found them so
    /// and wrote nothing ([`applied`]).
    pub unchanged_since_run: Option<String>,
}

impl Report {
    /// What a load that found nothing to change reports: every staged row in place.
    fn unchanged(since: applied::Unchanged, policy: DependentsPolicy) -> Self {
        let tables = since
            .rows
            .iter()
            .map(|(table, rows)| {
                let counts = reconcile::TableCounts {
                    unchanged: *rows,
                    staged: *rows,
                    ..Default::default()
                };
                (table.clone(), counts)
            })
            .collect();
        Report {
            tables: ApplyCounts { tables },
            auth_users_created: 0,
            auth_identities_created: 0,
            dependents_policy: policy,
            dependents: Vec::new(),
            dependents_deleted: Vec::new(),
            validation: Value::Null,
            backup_schema: None,
            unchanged_since_run: Some(since.since_run),
        }
    }

    fn backup_schema(&self, apply: bool) -> Option<&str> {
        self.backup_schema.as_deref().filter(|_| apply)
    }

    fn log_fields<'a>(&'a self, inputs: &'a Inputs, apply: bool) -> LogFields<'a> {
        LogFields {
            backup_schema: self.backup_schema(apply),
            ..inputs.log_fields()
        }
    }

    fn to_json(&self, run: &GuardedRun, approval_sha256: Option<&str>) -> Value {
        let elapsed_ms = run.elapsed_ms();
        json!({
            "status": run.success_status(),
            "message": if self.unchanged_since_run.is_some() {
                "Nothing to change: every table is as an earlier load of this approval left it."
            } else if run.apply {
                "Clean data population completed successfully."
            } else {
                "Changes were calculated but not applied. Run `cleanmig load --apply` to apply them."
            },
            "run_id": run.run_id,
            "mode": guard::mode(run.apply),
            "approval_sha256": approval_sha256,
            "backup_schema": self.backup_schema(run.apply),
            "unchanged_since_run": self.unchanged_since_run,
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

    /// The per-table summary, through `tracing` (silenced by `--quiet`).
    fn print_summary(&self, run_id: &str, applied: bool, elapsed_ms: i64) {
        use crate::artifacts::human_count as h;
        if let Some(since) = &self.unchanged_since_run {
            tracing::info!(
                "load {run_id}: nothing to change: every table is as load {since} left it; no staged file copied, nothing written, no backup needed"
            );
        }
        tracing::info!(
            "load {run_id}: {} in {:.2} s",
            if applied && self.unchanged_since_run.is_some() {
                "committed, nothing changed (its log row only)"
            } else if applied {
                "applied and committed"
            } else {
                "dry run, rolled back (nothing changed)"
            },
            elapsed_ms as f64 / 1000.0
        );
        for (table, c) in &self.tables.tables {
            tracing::info!(
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
        tracing::info!(
            "  auth.users        {:>9} created; auth.identities {} created",
            h(self.auth_users_created),
            h(self.auth_identities_created)
        );
        for (t, n) in &self.dependents_deleted {
            tracing::info!("  dependents        {:>9} deleted from {t}", h(*n));
        }
        let backup = match (&self.backup_schema, applied) {
            (Some(schema), true) => schema.as_str(),
            (Some(_), false) => "(rolled back)",
            (None, _) => "(none: nothing written)",
        };
        tracing::info!("  validation passed; backup schema {backup}");
    }
}

/// A run's progress on stderr: one line per step, ending in the seconds since the run started
/// (`make bench` reads each step's time from these lines).
pub(crate) struct Steps(std::time::Instant);

impl Steps {
    pub(crate) fn start() -> Self {
        Self(std::time::Instant::now())
    }

    pub(crate) fn done(&self, what: &str) {
        tracing::info!("{what} ({:.2} s)", self.0.elapsed().as_secs_f64());
    }
}

/// The whole load in one transaction, up to the commit: returns what it did and the open
/// transaction, which [`GuardedRun::commit`] commits (`--apply`) or rolls back.
async fn load<'c>(
    client: &'c mut Client,
    inputs: &Inputs,
    opts: &LoadOptions,
    run_id: &str,
) -> Result<(Report, Tx<'c>)> {
    let catalog = inputs.stage.catalog()?;
    let validation_sql = inputs.stage.load_validation()?;
    let backup = backup::schema_name(run_id)?;
    let steps = Steps::start();
    let tx = guard::begin(client, opts.timeouts).await?;
    guard::lock_tables(&tx, catalog).await?;
    steps.done("transaction started, advisory lock held, destination tables locked against writes");

    // Every approved file is checked against the approval once the locks are held (a file
    // replaced while the load waited for them is refused), on a thread of its own while the
    // server checks the sources. The staged files are checked as their private copies are
    // made; every Parquet file the load reads comes from such a copy.
    let (files, sources) = tokio::join!(
        stage::ApprovedFiles::check(
            &opts.artifacts,
            &inputs.approval,
            stage::staged_files(&inputs.stage, catalog)
        ),
        drift::check_sources(&tx, &inputs.extract)
    );
    let files = files?;
    sources?;
    steps.done("approved files unchanged, sources unchanged since extraction");
    let approval = &inputs.approval_sha256;
    if let Some((since, state)) =
        applied::unchanged_since(&tx, catalog, &inputs.stage, approval).await?
    {
        steps.done(&format!("every table as load {} left it", since.since_run));
        return finish_unchanged(tx, &inputs.stage, since, state, opts, run_id, &steps).await;
    }
    align_columns(&tx, catalog).await?;
    let staged = stage::copy_all(&tx, &files, &inputs.stage, catalog).await?;
    steps.done("approved rows copied into temporary tables");
    drift::check_destinations(&tx, &files, &inputs.extract, catalog, &staged).await?;
    steps.done("destination tables gained or lost no rows since extraction");

    // The existing logins remembered and the delete sets computed, sent together (pipelined).
    let ((), plan) = crate::pg::pipelined2(
        auth::remember_existing(&tx),
        plan_deletes(&tx, catalog, opts.dependents, &staged),
    )
    .await?;
    let reconcilers = apply::reconcilers(&tx, catalog, &plan.clean, UpdateMode::Load).await?;
    steps.done("rows to delete found");
    let report_path = opts
        .artifacts
        .join("load")
        .join(format!("{run_id}-changed-since-extraction.json"));
    drift::check_values(
        &tx,
        &files,
        &inputs.extract,
        catalog,
        &reconcilers,
        &report_path,
    )
    .await?;
    steps.done("no value the load writes changed since extraction");
    backup::create(&tx, &backup, catalog).await?;
    steps.done(&format!("backup in schema {backup}"));
    let mut fk_indexes = fk_index::ForeignKeyIndexes::create(&tx, &plan.parents).await?;
    if !fk_indexes.is_empty() {
        steps.done(&format!(
            "{} unindexed foreign keys indexed for the run",
            fk_indexes.len()
        ));
    }
    let dependents_deleted = if opts.dependents == DependentsPolicy::Delete {
        let deleted = dependents::delete(&tx, catalog, &plan.external, &backup).await?;
        steps.done("dependent rows deleted");
        deleted
    } else {
        Vec::new()
    };
    let checks = insert_checks::InsertChecks::probe(&tx).await?;
    let (auth_users_created, auth_identities_created) =
        auth::create(&tx, catalog, &staged, &backup, &checks).await?;
    let adopt = adopt_new_rows(catalog, &reconcilers, &backup);
    steps.done("auth users created");
    let (internal, clean) = (&plan.internal, &plan.clean);
    let keys = apply::DeleteKeys {
        internal,
        indexes: &mut fk_indexes,
    };
    let tables = apply::apply_in_fk_order(
        &tx,
        catalog,
        keys,
        clean,
        &reconcilers,
        apply::Inserts {
            adopt: &adopt,
            checks: &checks,
        },
        &steps,
    )
    .await?;
    backup::record_writes(&tx, &backup, catalog).await?;
    steps.done("what the run wrote recorded in its backup");
    fk_indexes.drop(&tx).await?;
    let loaded = applied::Loaded::take(&tx, catalog, &reconcilers, opts.apply).await?;
    let validation =
        validate::run(&tx, catalog, validation_sql, &tables, &reconcilers, &loaded).await?;
    steps.done("validation pack passed");
    if opts.apply {
        applied::record(&tx, run_id, &loaded.into_state(run_id)).await?;
        steps.done("resulting state recorded");
    }

    let report = Report {
        tables,
        auth_users_created,
        auth_identities_created,
        dependents_policy: opts.dependents,
        dependents: plan.dependents,
        dependents_deleted,
        validation,
        backup_schema: Some(backup),
        unchanged_since_run: None,
    };
    Ok((report, tx))
}

/// The end of a load that found every table as an earlier load of its approval left them:
/// validate, and record the same state for the next run.
async fn finish_unchanged<'c>(
    tx: Tx<'c>,
    stage: &Manifest,
    since: applied::Unchanged,
    state: applied::State,
    opts: &LoadOptions,
    run_id: &str,
    steps: &Steps,
) -> Result<(Report, Tx<'c>)> {
    let (catalog, validation_sql) = (stage.catalog()?, stage.load_validation()?);
    let since_run = since.since_run.clone();
    let mut report = Report::unchanged(since, opts.dependents);
    // The existing logins remembered and the pack, whose auth checks read them, sent together.
    let ((), validation) = crate::pg::pipelined2(
        auth::remember_existing(&tx),
        validate::run_unchanged(
            &tx,
            catalog,
            validation_sql,
            &report.tables,
            &since_run,
            &state,
        ),
    )
    .await?;
    report.validation = validation;
    steps.done("validation pack passed");
    if opts.apply {
        applied::record(&tx, run_id, &state).await?;
    }
    Ok((report, tx))
}

/// Add the catalogue's columns that a table lacks (idempotent; the plan's schema alignment).
async fn align_columns(tx: &Transaction<'_>, catalog: &Catalog) -> Result<()> {
    let tables: Vec<_> = catalog
        .tables
        .iter()
        .filter(|t| !t.added_columns.is_empty())
        .map(|t| {
            let names: Vec<String> = t.added_columns.iter().map(|c| c.name.clone()).collect();
            (t, t.qualified(), names)
        })
        .collect();
    // Every table asked at once (pipelined).
    let present = crate::pg::pipelined(tables.iter().map(|(_, qualified, names)| async move {
        crate::pg::query_one(
            tx,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = $1::text::regclass \
             AND NOT attisdropped AND attname = ANY ($2::text[])",
            &[qualified, names],
            &[Type::TEXT, Type::TEXT_ARRAY],
        )
        .await
    }))
    .await?;
    for ((table, _, names), present) in tables.iter().zip(present) {
        if present.get::<_, i64>(0) == names.len() as i64 {
            continue;
        }
        let adds: Vec<String> = table
            .added_columns
            .iter()
            .map(|c| {
                let default = c
                    .default
                    .as_ref()
                    .map(|d| format!(" DEFAULT {d}"))
                    .unwrap_or_default();
                format!(
                    "ADD COLUMN IF NOT EXISTS {} {}{default}",
                    crate::sql::ident(&c.name),
                    c.pg_type
                )
            })
            .collect();
        tx.batch_execute(&format!(
            "ALTER TABLE {} {}",
            table.qualified(),
            adds.join(", ")
        ))
        .await
        .with_context(|| format!("cannot add the missing {} columns", table.display()))?;
    }
    Ok(())
}

/// Reconcilers that give rows created during the run (by triggers) every staged column.
fn adopt_new_rows(
    catalog: &Catalog,
    reconcilers: &[(String, reconcile::Reconcile)],
    backup: &str,
) -> Vec<apply::Adopt> {
    reconcilers
        .iter()
        .zip(catalog.reconciled())
        .map(|((name, r), table)| apply::Adopt {
            table: name.clone(),
            full: r.restoring(),
            before: format!(
                "{}.{}",
                crate::sql::ident(backup),
                crate::sql::ident(&table.backup_table())
            ),
        })
        .collect()
}

/// What the load deletes, who references it, and the clean rows of every reconciled table.
struct DeletePlan {
    clean: BTreeMap<String, CleanRows>,
    /// Foreign keys between reconciled tables.
    internal: Vec<deletes::ForeignKey>,
    /// Foreign keys from other tables into reconciled ones.
    external: Vec<deletes::ForeignKey>,
    dependents: Vec<dependents::Dependents>,
    /// `schema.table` of the tables rows are deleted from (for the run's FK indexes).
    parents: Vec<String>,
}

/// Compute the delete sets and apply the dependents policy to them.
async fn plan_deletes(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    policy: DependentsPolicy,
    staged: &BTreeMap<String, stage::Staged>,
) -> Result<DeletePlan> {
    let sources: Vec<_> = catalog
        .reconciled()
        .map(|table| (table, crate::sql::ident(&table.temp())))
        .collect();
    // The delete sets and the foreign keys into them asked at once (pipelined).
    let (sizes, referencing) = crate::pg::pipelined2(
        deletes::compute_all(tx, &sources),
        deletes::referencing(tx, &catalog.reconciled_names()),
    )
    .await?;
    let unmatched: BTreeMap<String, u64> = sources
        .iter()
        .map(|(table, _)| table.name.clone())
        .zip(sizes)
        .collect();
    let (internal, external) = deletes::split_internal(referencing, catalog);
    let mut found = dependents::find(tx, catalog, &external).await?;
    match policy {
        DependentsPolicy::Refuse if !found.is_empty() => {
            let list: Vec<String> = found.iter().map(|d| format!("  {d}")).collect();
            bail!(
                "rows of other tables reference rows the load would delete:\n{}\nnothing was changed. Choose `--dependents delete` (delete those rows too, backed up for rollback) or `--dependents keep` (keep the referenced profiles and transactions)",
                list.join("\n")
            );
        }
        DependentsPolicy::Keep => {
            deletes::keep_referenced(tx, catalog, &external, &internal).await?;
            found = dependents::find(tx, catalog, &external).await?;
            if let Some(first) = found.first() {
                bail!("--dependents keep could not keep every referenced row: {first}");
            }
        }
        _ => {}
    }
    // Every table's count asked at once (pipelined).
    let kept = crate::pg::pipelined(
        catalog
            .reconciled()
            .map(|table| deletes::kept(tx, table, unmatched[&table.name])),
    )
    .await?;
    let mut clean = BTreeMap::new();
    for (table, kept) in catalog.reconciled().zip(kept) {
        let s = &staged[table.stage_artifact()];
        clean.insert(
            table.name.clone(),
            CleanRows {
                kept,
                relation: crate::sql::ident(&s.temp),
                columns: s.columns.clone(),
                rows: s.rows,
            },
        );
    }
    Ok(DeletePlan {
        clean,
        internal,
        external,
        dependents: found,
        parents: catalog.reconciled_names(),
    })
}
