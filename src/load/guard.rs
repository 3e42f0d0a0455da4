//! The guarded run shared by load and rollback: one transaction with timeouts and the advisory
//! lock, the destination tables locked against writes, Ctrl-C and timeouts turned into
//! messages, and the run's row in `population_operation_log` opened and completed around it.

use super::oplog::{OpLog, RunEnd, RunStart};
use crate::catalog::Catalog;
use crate::connect::ConnInfo;
use crate::error::Refusal;
use crate::pg::Tx;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::future::Future;
use tokio_postgres::{Client, Transaction};

/// Advisory lock key shared by load and rollback ("cleanmig" in ASCII): a second run is
/// refused at once instead of queueing behind the first.
pub const ADVISORY_LOCK_KEY: i64 = 0x636c_6561_6e6d_6967;

/// SQL: the `pg_locks` rows (alias `l`) of the run lock of this database. An advisory lock
/// belongs to a database, and `pg_locks` lists every database's: a run in another database
/// of the same server holds another lock. `$1`: [`ADVISORY_LOCK_KEY`].
pub const RUN_LOCK_ROWS: &str = "l.locktype = 'advisory' AND l.granted \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND ((l.classid::int8 << 32) | l.objid::int8) = $1";

/// A run id: UTC time plus a random suffix, e.g. `20261125T131500Z-3f9a1c`.
pub fn new_run_id() -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{}-{suffix}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"))
}

/// Start a transaction with the run's timeouts and the advisory lock (transaction-scoped, like
/// every setting: nothing outlives the transaction on a pooler's shared server connection).
///
/// JIT compilation is off for the run. Each of its statements runs once, over whole tables,
/// so each costs enough for Postgres to compile it (`jit_above_cost`), and compiling took up to
/// a second a statement, more than it saved (README, "Benchmark").
pub async fn begin<'a>(client: &'a mut Client, timeouts: Timeouts) -> Result<Tx<'a>> {
    let tx = Tx::new(client.transaction().await?);
    let settings = format!(
        "SET LOCAL lock_timeout = '{}ms'; \
         SET LOCAL statement_timeout = '{}ms'; \
         SET LOCAL idle_in_transaction_session_timeout = '{}ms'; \
         SET LOCAL jit = off",
        timeouts.lock_ms, timeouts.statement_ms, timeouts.statement_ms
    );
    // The settings and the lock asked at once (pipelined); the server takes the lock after.
    let ((), lock) = crate::pg::pipelined2(
        tx.batch_execute(&settings),
        crate::pg::query_one(
            &*tx,
            "SELECT pg_try_advisory_xact_lock($1)",
            &[&ADVISORY_LOCK_KEY],
            &[tokio_postgres::types::Type::INT8],
        ),
    )
    .await?;
    let locked: bool = lock.get(0);
    if !locked {
        let holder = lock_holder(&tx).await;
        bail!("another cleanmig load or rollback is running on this database{holder}; this run is refused rather than queued. Wait for it to finish (`cleanmig status`) and run again");
    }
    Ok(tx)
}

/// ` (backend pid 123, psql as postgres, since ... UTC)` for the session holding the lock.
async fn lock_holder(tx: &Transaction<'_>) -> String {
    tx.query_opt(
        &format!(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
                    coalesce(to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE {RUN_LOCK_ROWS} LIMIT 1"
        ),
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
    .unwrap_or_default()
}

/// Lock the reconciled tables against writes until the transaction ends: the app must not
/// write them between the drift check and the commit. Reads go on; writes wait (or the run
/// gives up after the lock timeout).
pub async fn lock_tables(tx: &Transaction<'_>, catalog: &Catalog) -> Result<()> {
    let tables: Vec<String> = catalog.reconciled().map(|t| t.qualified()).collect();
    if tables.is_empty() {
        return Ok(());
    }
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
        tables.join(", ")
    ))
    .await
    .context("cannot lock the destination tables against writes")
}

/// Timeouts of a load or rollback transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub lock_ms: u64,
    pub statement_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            lock_ms: 5000,
            statement_ms: 300_000,
        }
    }
}

/// Turn lock and statement timeouts into messages that say what to do.
pub fn explain(err: anyhow::Error, timeouts: Timeouts) -> anyhow::Error {
    let code = err
        .chain()
        .find_map(|e| e.downcast_ref::<tokio_postgres::Error>())
        .and_then(|e| e.code().cloned());
    match code {
        Some(c) if c == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE => err.context(format!(
            "a table is locked by another session and the lock was not granted within {} ms (--lock-timeout-ms); nothing was changed. Stop the writers (maintenance mode) or find the holder in pg_locks/pg_stat_activity, then run again",
            timeouts.lock_ms
        )),
        Some(c) if c == tokio_postgres::error::SqlState::QUERY_CANCELED => err.context(format!(
            "a statement ran longer than {} ms (--statement-timeout-ms) and was cancelled; nothing was changed",
            timeouts.statement_ms
        )),
        _ => err,
    }
}

/// What the run's log row records besides its outcome.
#[derive(Debug, Clone, Default)]
pub struct LogFields<'a> {
    pub approval_sha256: Option<&'a str>,
    pub extract_fingerprint: Option<&'a str>,
    pub approved_by: Option<&'a str>,
    pub backup_schema: Option<&'a str>,
}

/// A load or rollback between its start and its end: its id, mode and log row.
pub struct GuardedRun {
    pub run_id: String,
    pub operation: &'static str,
    pub apply: bool,
    pub timeouts: Timeouts,
    log: OpLog,
}

impl GuardedRun {
    /// Open the run's log row (`running`).
    pub async fn start(
        conn: &ConnInfo,
        operation: &'static str,
        apply: bool,
        target_run_id: Option<&str>,
        timeouts: Timeouts,
    ) -> Result<Self> {
        let run_id = new_run_id();
        let log = OpLog::start(
            conn,
            RunStart {
                run_id: &run_id,
                operation,
                mode: mode(apply),
                target_run_id,
            },
        )
        .await?;
        Ok(Self {
            run_id,
            operation,
            apply,
            timeouts,
            log,
        })
    }

    /// Run `work`; Ctrl-C abandons it (its transaction is rolled back with the connection's
    /// drop), and timeouts get an explanation.
    pub async fn execute<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let outcome = tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C); the transaction was rolled back and nothing was changed")),
        };
        outcome.map_err(|e| explain(e, self.timeouts))
    }

    pub fn elapsed_ms(&self) -> i64 {
        self.log.elapsed_ms()
    }

    /// `success` or `dry_run_completed`.
    pub fn success_status(&self) -> &'static str {
        if self.apply {
            "success"
        } else {
            "dry_run_completed"
        }
    }

    /// End the run's transaction: with `--apply`, record `success` in the run's log row inside
    /// the transaction and commit, so that the log says `success` exactly when the changes
    /// committed; otherwise roll back. A connection that breaks during COMMIT leaves the outcome
    /// unknown here ([`Refusal::CommitOutcomeUnknown`]).
    pub async fn commit(&self, tx: Tx<'_>, fields: LogFields<'_>, result: &Value) -> Result<()> {
        if !self.apply {
            return tx.rollback().await.context("ROLLBACK failed");
        }
        self.log
            .finish_in(&tx, self.end(self.success_status(), &fields, result))
            .await?;
        // Before the pause, so that an error there is COMMIT's own.
        tx.release_statements()
            .await
            .context("cannot close the run's prepared statements; nothing was changed")?;
        pause_before_commit(&tx).await;
        match tx.commit_released().await {
            Ok(()) => Ok(()),
            Err(e) if e.as_db_error().is_some() => {
                Err(anyhow::Error::new(e).context("COMMIT failed; nothing was changed"))
            }
            Err(e) => Err(anyhow::Error::new(e).context(Refusal::CommitOutcomeUnknown)),
        }
    }

    fn end<'a>(&self, status: &'a str, fields: &LogFields<'a>, result: &'a Value) -> RunEnd<'a> {
        RunEnd {
            status,
            approval_sha256: fields.approval_sha256,
            extract_fingerprint: fields.extract_fingerprint,
            approved_by: fields.approved_by,
            backup_schema: fields.backup_schema,
            counts: result.get("tables"),
            result,
            error: None,
        }
    }

    /// A run that succeeded: complete its log row if the transaction did not (dry run) and
    /// print its JSON result on stdout. The log is bookkeeping: failing to write it is a
    /// warning, never a failure of a run whose outcome is already settled.
    pub async fn succeed(&self, fields: LogFields<'_>, result: &Value) -> Result<()> {
        if let Err(e) = self
            .log
            .finish(self.end(self.success_status(), &fields, result))
            .await
        {
            tracing::warn!(
                "{} {} {}; its log row could not be completed: {e:#}",
                self.operation,
                self.run_id,
                if self.apply {
                    "committed (the log row says so: it was written in the same transaction)"
                } else {
                    "finished"
                }
            );
        }
        println!("{}", serde_json::to_string_pretty(result)?);
        Ok(())
    }

    /// Complete the log row of a run that failed, print its JSON result, and hand the error
    /// back. `extra` adds fields to the printed result.
    pub async fn fail(
        &self,
        err: anyhow::Error,
        fields: LogFields<'_>,
        extra: Value,
    ) -> anyhow::Error {
        let message = format!("{err:#}");
        let elapsed_ms = self.elapsed_ms();
        let unknown = matches!(
            err.downcast_ref::<Refusal>(),
            Some(Refusal::CommitOutcomeUnknown)
        );
        let mut result = json!({
            "status": if unknown { "commit_outcome_unknown" } else { "failed" },
            "message": message,
            "run_id": self.run_id,
            "mode": mode(self.apply),
            "execution_time_ms": elapsed_ms,
            "execution_time": format!("{:.3} s", elapsed_ms as f64 / 1000.0),
        });
        if let (Some(r), Value::Object(extra)) = (result.as_object_mut(), extra) {
            r.extend(extra);
        }
        // The log is readable by more people than the artifacts: it keeps the first line of
        // the message, emails masked, and the listings stay on the terminal and in the
        // private files.
        let logged_message = loggable(&message);
        let mut logged_result = result.clone();
        logged_result["message"] = Value::String(logged_message.clone());
        let logged = self
            .log
            .finish(RunEnd {
                status: "failed",
                approval_sha256: fields.approval_sha256,
                extract_fingerprint: fields.extract_fingerprint,
                approved_by: fields.approved_by,
                backup_schema: None,
                counts: None,
                result: &logged_result,
                error: Some(&logged_message),
            })
            .await;
        if let Err(log_err) = logged {
            tracing::error!("{log_err:#}");
        }
        if let Ok(text) = serde_json::to_string_pretty(&result) {
            println!("{text}");
        }
        if unknown {
            let said = match self.log.status().await {
                Ok(s) if s == "success" => "population_operation_log says it COMMITTED".to_string(),
                Ok(_) => {
                    "population_operation_log says it did not commit; the database is unchanged"
                        .to_string()
                }
                Err(_) => {
                    "the log cannot be read either; run `cleanmig status` before anything else"
                        .to_string()
                }
            };
            tracing::error!(
                "{} {}: the connection broke during COMMIT; {said}",
                self.operation,
                self.run_id
            );
        } else {
            tracing::error!(
                "{} {}: failed; the database is unchanged (the run is logged in population_operation_log)",
                self.operation,
                self.run_id
            );
        }
        err
    }
}

/// Hook for the commit test: with `CLEANMIG_TEST_FAULT=pause-before-commit` the run waits,
/// just before COMMIT, until its connection is closed (at most a minute), so that a test can
/// break the connection there.
async fn pause_before_commit(tx: &Transaction<'_>) {
    if !std::env::var("CLEANMIG_TEST_FAULT").is_ok_and(|v| v == "pause-before-commit") {
        return;
    }
    tracing::warn!("CLEANMIG_TEST_FAULT=pause-before-commit: waiting for the connection to close");
    let _ = tx
        .batch_execute("SET LOCAL application_name = 'cleanmig paused before commit'")
        .await;
    for _ in 0..600 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if tx.batch_execute("").await.is_err() {
            return;
        }
    }
}

/// An error message as the operation log keeps it: its first line, emails masked.
pub fn loggable(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    super::changes::mask_emails(first)
}

/// `apply` or `dry_run`.
pub fn mode(apply: bool) -> &'static str {
    if apply {
        "apply"
    } else {
        "dry_run"
    }
}
