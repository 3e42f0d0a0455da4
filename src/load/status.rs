//! Status: artifacts, approval, source drift, last runs. Reads only; prints to stdout. Its
//! statements run outside any transaction, so they are unnamed ([`crate::pg`]).

use super::drift::display_name;
use crate::approve::{approval_sha256, Approval, Checks, CHECKS};
use crate::artifacts::{human_count, Manifest, APPROVAL, EXTRACT_DIR, STAGE_DIR};
use crate::connect::ConnInfo;
use crate::fingerprint::{self, Coverage};
use crate::pg;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// Where `cleanmig status` looks.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    pub artifacts: PathBuf,
    /// The database, if connection settings were given.
    pub conn: Option<ConnInfo>,
}

#[tracing::instrument(name = "status", skip_all)]
pub async fn run(opts: &StatusOptions) -> Result<()> {
    let mut out = String::new();
    let dir = &opts.artifacts;
    let extract = artifacts_section(&mut out, dir);
    approval_section(&mut out, dir);
    database_section(&mut out, opts.conn.as_ref(), extract.as_ref()).await;
    print!("{out}");
    Ok(())
}

fn artifacts_section(out: &mut String, dir: &Path) -> Option<Manifest> {
    let _ = writeln!(out, "artifacts ({})", dir.display());
    let extract = match Manifest::read(&dir.join(EXTRACT_DIR)) {
        Ok(m) => {
            let _ = writeln!(
                out,
                "  extract:   {} tables at {} from {}",
                m.tables.len(),
                m.extracted_at,
                m.source.as_deref().unwrap_or("?")
            );
            Some(m)
        }
        Err(_) => {
            let _ = writeln!(out, "  extract:   none (run `cleanmig extract`)");
            None
        }
    };
    match Manifest::read(&dir.join(STAGE_DIR)) {
        Ok(m) => {
            let listed: Vec<String> = m
                .catalog
                .iter()
                .flat_map(|c| c.staged())
                .filter_map(|t| {
                    let a = t.stage_artifact();
                    m.artifacts
                        .get(a)
                        .map(|e| format!("{a} {}", human_count(e.rows)))
                })
                .collect();
            let _ = writeln!(out, "  stage:     {}", listed.join(", "));
            if extract
                .as_ref()
                .is_some_and(|e| e.fingerprint != m.fingerprint)
            {
                let _ = writeln!(
                    out,
                    "             computed from another extract: re-run `cleanmig transform`"
                );
            }
        }
        Err(_) => {
            let _ = writeln!(out, "  stage:     none (run `cleanmig transform`)");
        }
    }
    if let Ok(checks) = crate::artifacts::read_json::<Checks>(&dir.join(STAGE_DIR).join(CHECKS)) {
        let failing: Vec<String> = checks
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{} ({}, {} rows)", c.name, c.severity, c.failing_rows))
            .collect();
        let _ = writeln!(
            out,
            "  checks:    {} passed, {} failing{}",
            checks.checks.len() - failing.len(),
            failing.len(),
            if failing.is_empty() {
                String::new()
            } else {
                format!(": {}", failing.join(", "))
            }
        );
    }
    extract
}

fn approval_section(out: &mut String, dir: &Path) {
    match Approval::read(dir) {
        Err(_) => {
            let _ = writeln!(out, "  approval:  none (review, then `cleanmig approve`)");
        }
        Ok(a) => {
            let state = match a.verify(dir) {
                Ok(()) => "artifacts match it".to_string(),
                Err(e) => format!("INVALID: {e}"),
            };
            let sha = approval_sha256(dir).unwrap_or_default();
            let _ = writeln!(
                out,
                "  approval:  by {} at {}, {} files, {} accepted failing checks; {state}",
                a.approved_by,
                a.approved_at,
                a.files.len(),
                a.accepted.len()
            );
            let _ = writeln!(out, "             {APPROVAL} sha256 {sha}");
        }
    }
}

async fn database_section(out: &mut String, conn: Option<&ConnInfo>, extract: Option<&Manifest>) {
    let Some(info) = conn else {
        let _ = writeln!(
            out,
            "database: not configured (--database-url, DATABASE_URL or PG*)"
        );
        return;
    };
    let client = match info.connect().await {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "database {info}: unreachable: {e:#}");
            return;
        }
    };
    let _ = writeln!(out, "database {info}");
    if let Some(m) = extract {
        tables_section(out, &client, m).await;
    }
    runs_section(out, &client).await;
}

/// Each extracted table against its fingerprint.
async fn tables_section(out: &mut String, client: &Client, m: &Manifest) {
    for entry in m.tables.values().filter(|t| t.role != "dependent") {
        let coverage = if entry.role == "source" {
            entry.fingerprint.coverage
        } else {
            Coverage::Keys
        };
        let state = match fingerprint::compute(
            client,
            &entry.qualified,
            coverage,
            &entry.key_columns,
        )
        .await
        {
            Ok(now) if now == entry.fingerprint => "unchanged since extraction".to_string(),
            Ok(now) if entry.role == "source" => format!(
                "CHANGED since extraction ({} -> {} rows): re-run extract, transform, approve",
                entry.fingerprint.rows, now.rows
            ),
            Ok(now) => format!(
                "differs from the extract ({} -> {} rows; expected after a load)",
                entry.fingerprint.rows, now.rows
            ),
            Err(e) => format!("cannot fingerprint: {e:#}"),
        };
        let _ = writeln!(
            out,
            "  {:<11} {:<26} {state}",
            entry.role,
            display_name(&entry.qualified)
        );
    }
}

/// The last runs from the operation log.
async fn runs_section(out: &mut String, client: &Client) {
    match super::oplog::exists(client).await {
        Ok(true) => {}
        _ => {
            let _ = writeln!(
                out,
                "  runs: none yet (population_operation_log does not exist)"
            );
            return;
        }
    }
    let rows = pg::query(
        client,
        "SELECT run_id, operation, mode, status, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \
                    coalesce(duration_ms, 0), coalesce(backup_schema, ''), coalesce(error, ''), coalesce(target_run_id, '') \
             FROM cleanmig.population_operation_log ORDER BY id DESC LIMIT 10",
        &[],
        &[],
    )
    .await;
    // A `running` row while no run holds this database's run lock was killed before it
    // finished.
    let lock_held: bool = pg::query_one(
        client,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE {})",
            super::guard::RUN_LOCK_ROWS
        ),
        &[&super::guard::ADVISORY_LOCK_KEY],
        &[Type::INT8],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or(true);
    match rows {
        Ok(rows) => {
            let _ = writeln!(out, "  last runs (newest first; population_operation_log):");
            for r in rows {
                let mut status: String = r.get(3);
                if status == "running" && !lock_held {
                    status = "unfinished (killed; nothing committed)".into();
                }
                let error: String = r.get(7);
                let target: String = r.get(8);
                let _ = writeln!(
                    out,
                    "    {} {:<8} {:<7} {:<17} {} UTC {:>7} ms{}{}{}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    status,
                    r.get::<_, String>(4),
                    r.get::<_, i64>(5),
                    if target.is_empty() {
                        String::new()
                    } else {
                        format!(" of {target}")
                    },
                    if status == "success" && r.get::<_, String>(1) == "load" {
                        format!(
                            " (rollback: cleanmig rollback --run {})",
                            r.get::<_, String>(0)
                        )
                    } else {
                        String::new()
                    },
                    if error.is_empty() {
                        String::new()
                    } else {
                        format!("\n      error: {}", error.lines().next().unwrap_or(""))
                    }
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  runs: cannot read population_operation_log: {e}");
        }
    }
}
