//! `population_operation_log`: one row per load or rollback, written through a connection of
//! its own so that the row of a dry or failed run survives that run's rollback. That connection
//! works outside any transaction, so every statement on it is unnamed or simple ([`crate::pg`]).

use crate::connect::ConnInfo;
use crate::pg;
use anyhow::{Context, Result};
use std::time::Instant;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient, Transaction};

/// DDL of the log table (idempotent).
pub const DDL: &str = include_str!("sql/oplog.sql");

/// A run's log row: inserted as `running` when the run starts, completed when it ends.
/// A run killed outright stays `running` in the log, which is what it is: unfinished.
pub struct OpLog {
    client: Client,
    id: i64,
    started: Instant,
}

/// What a run writes when it starts.
pub struct RunStart<'a> {
    pub run_id: &'a str,
    pub operation: &'a str,
    pub mode: &'a str,
    pub target_run_id: Option<&'a str>,
}

/// What a run writes when it ends.
pub struct RunEnd<'a> {
    pub status: &'a str,
    pub approval_sha256: Option<&'a str>,
    pub extract_fingerprint: Option<&'a str>,
    pub approved_by: Option<&'a str>,
    pub backup_schema: Option<&'a str>,
    pub counts: Option<&'a serde_json::Value>,
    pub result: &'a serde_json::Value,
    pub error: Option<&'a str>,
}

impl OpLog {
    /// Open the log connection, create the table if absent and insert the `running` row.
    pub async fn start(info: &ConnInfo, run: RunStart<'_>) -> Result<Self> {
        let client = info.connect().await?;
        create_table(&client).await?;
        let row = pg::query_one(
            &client,
            "INSERT INTO cleanmig.population_operation_log \
               (run_id, operation, mode, status, target_run_id, os_user, tool_version) \
             VALUES ($1, $2, $3, 'running', $4, $5, $6) RETURNING id",
            &[
                &run.run_id,
                &run.operation,
                &run.mode,
                &run.target_run_id,
                &std::env::var("USER").ok(),
                &env!("CARGO_PKG_VERSION"),
            ],
            &[Type::TEXT; 6],
        )
        .await
        .context("cannot write to cleanmig.population_operation_log")?;
        Ok(Self {
            client,
            id: row.get(0),
            started: Instant::now(),
        })
    }

    pub fn elapsed_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// Complete the run's row through the log's own connection, if it is still `running`: a
    /// row that the run's transaction completed when it committed is the truth and stays.
    pub async fn finish(&self, end: RunEnd<'_>) -> Result<()> {
        update(&self.client, self.id, &end, self.elapsed_ms())
            .await
            .context("cannot complete the run's row in population_operation_log")?;
        if std::env::var("CLEANMIG_TEST_FAULT").is_ok_and(|v| v == "fail-log-after-commit") {
            anyhow::bail!("CLEANMIG_TEST_FAULT=fail-log-after-commit: the log connection failed");
        }
        Ok(())
    }

    /// Complete the run's row inside the run's own transaction, just before it commits: the
    /// row says `success` exactly when the run's changes committed.
    pub async fn finish_in(&self, tx: &Transaction<'_>, end: RunEnd<'_>) -> Result<()> {
        update(tx, self.id, &end, self.elapsed_ms())
            .await
            .context("cannot record the run's outcome in population_operation_log")?;
        Ok(())
    }

    /// The row's status as the database has it now.
    pub async fn status(&self) -> Result<String> {
        Ok(pg::query_one(
            &self.client,
            "SELECT status FROM cleanmig.population_operation_log WHERE id = $1",
            &[&self.id],
            &[Type::INT8],
        )
        .await?
        .get(0))
    }
}

async fn update(
    client: &impl GenericClient,
    id: i64,
    end: &RunEnd<'_>,
    elapsed_ms: i64,
) -> Result<u64, tokio_postgres::Error> {
    let counts = end.counts.map(|c| c.to_string());
    let result = end.result.to_string();
    pg::execute(
        client,
        "UPDATE cleanmig.population_operation_log SET \
           status = $2, approval_sha256 = $3, extract_fingerprint = $4, approved_by = $5, \
           backup_schema = $6, counts = $7::jsonb, result = $8::jsonb, error = $9, \
           finished_at = clock_timestamp(), duration_ms = $10 \
         WHERE id = $1 AND status = 'running'",
        &[
            &id,
            &end.status,
            &end.approval_sha256,
            &end.extract_fingerprint,
            &end.approved_by,
            &end.backup_schema,
            &counts,
            &result,
            &end.error,
            &elapsed_ms,
        ],
        &[
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
        ],
    )
    .await
}

/// Create the log table if absent. Two runs starting at once may race on `CREATE TABLE IF NOT
/// EXISTS`; the loser retries once and finds the table.
pub async fn create_table(client: &Client) -> Result<()> {
    if let Err(first) = client.batch_execute(DDL).await {
        client
            .batch_execute(DDL)
            .await
            .map_err(|_| first)
            .context("cannot create cleanmig.population_operation_log")?;
    }
    super::backup::make_private(client, "cleanmig").await?;
    migrate_public_log(client).await
}

/// Earlier versions kept the log in `public`, where Supabase's Data API serves it to anyone with
/// the anon key. Move its rows into the private schema and drop it, once.
async fn migrate_public_log(client: &Client) -> Result<()> {
    let exists: bool = pg::query_one(
        client,
        "SELECT to_regclass('public.population_operation_log') IS NOT NULL",
        &[],
        &[],
    )
    .await?
    .get(0);
    if !exists {
        return Ok(());
    }
    let moved = client
        .simple_query(include_str!("sql/migrate_public_log.sql"))
        .await
        .context("cannot move public.population_operation_log into the private schema cleanmig")?;
    let rows = moved
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    tracing::warn!(
        "moved {rows} rows of public.population_operation_log (readable through Supabase's Data API) into the private cleanmig.population_operation_log, and dropped the public table"
    );
    Ok(())
}

/// Whether the log table exists (status does not create it).
pub async fn exists(client: &Client) -> Result<bool> {
    Ok(pg::query_one(
        client,
        "SELECT to_regclass('cleanmig.population_operation_log') IS NOT NULL",
        &[],
        &[],
    )
    .await?
    .get(0))
}
