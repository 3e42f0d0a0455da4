//! Supabase's poolers: every step through a real PgBouncer in transaction mode (port 6543 on
//! Supabase) and in session mode (port 5432), several times in a row, gives what a direct
//! connection gives.

use crate::load_fixture::{fixture, Fixture};
use crate::support::{self, PgBouncer, PoolMode, POOLER_PASSWORD};
use serde_json::Value;
use std::collections::BTreeMap;

/// How many times each step runs in a row: a statement left behind on a server connection
/// collides with a later client's statement of the same name only now and then.
const REPEAT: usize = 3;

/// One command through `url`; its output must not hold the pooler's password.
fn run(fx: &Fixture, url: &str, args: &[&str]) -> std::process::Output {
    let out = support::cleanmig(&fx.artifacts)
        .args(args)
        .args(["--database-url", url])
        .output()
        .unwrap();
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(POOLER_PASSWORD),
            "cleanmig {args:?} printed the password"
        );
    }
    out
}

fn ok(fx: &Fixture, url: &str, args: &[&str]) -> std::process::Output {
    let out = run(fx, url, args);
    assert!(
        out.status.success(),
        "cleanmig {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A load's or rollback's JSON without what differs from run to run (ids, times, and the
/// message, which names the run).
fn comparable(out: &std::process::Output) -> Value {
    let mut json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)));
    strip(&mut json);
    json
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for key in [
                "run_id",
                "rolled_back_run_id",
                "unchanged_since_run",
                "staged_rows_in_place_checked_by_run",
                "backup_schema",
                "approval_sha256",
                "execution_time",
                "execution_time_ms",
                "message",
            ] {
                map.remove(key);
            }
            map.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

/// `cleanmig status` without the database line, run ids, times and durations: the state of each
/// table and the operation, mode and status of each run.
fn comparable_status(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("database ") && !l.contains("approval:") && !l.contains("sha256")
        })
        .filter(|l| !l.starts_with("artifacts (") && !l.contains("extract:"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let is_run = words
                .first()
                .is_some_and(|w| w.len() == 23 && w.contains('T'));
            if is_run {
                words[1..4].join(" ")
            } else {
                l.to_string()
            }
        })
        .collect()
}

async fn row_counts(fx: &Fixture) -> BTreeMap<String, i64> {
    let tables = fx
        .client
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
             WHERE table_schema IN ('public', 'auth') AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let table: String = t.get(0);
        let n = fx.count(&format!("SELECT count(*) FROM {table}")).await;
        out.insert(table, n);
    }
    out
}

/// What every step printed and left behind, comparable between two databases.
#[derive(Debug, PartialEq)]
struct Transcript {
    /// Each extract against the fixture's own, made through a direct connection.
    extracts_as_direct: Vec<bool>,
    dry_runs: Vec<Value>,
    applies: Vec<Value>,
    status: Vec<Vec<String>>,
    rollback_dry_runs: Vec<Value>,
    rollback: Value,
    /// Rows per table after the loads (the two databases' defaults such as `now()` differ, so
    /// their contents are compared through the loads' own counts).
    after_load: BTreeMap<String, i64>,
    restored_to_before: bool,
    log: Vec<(String, String, String)>,
}

/// Extract, approve, load (dry run and `--apply`), status and rollback through `url`, each
/// database step several times in a row.
async fn every_step(fx: &Fixture, url: &str) -> Transcript {
    let before = fx.checksums(None).await;
    let extract_manifest = || {
        let m = cleanmig::artifacts::Manifest::read(&fx.artifacts.join("extract")).unwrap();
        (m.fingerprint, m.tables, m.artifacts)
    };
    // The fixture extracted through a direct connection.
    let fixture_extract = extract_manifest();
    let extracts_as_direct = (0..REPEAT)
        .map(|_| {
            ok(fx, url, &["extract"]);
            extract_manifest() == fixture_extract
        })
        .collect();
    fx.approve();
    let dry_runs = (0..REPEAT)
        .map(|_| comparable(&ok(fx, url, &["load"])))
        .collect();
    let mut applies = Vec::new();
    let mut first_apply = None;
    for _ in 0..REPEAT {
        let out = ok(fx, url, &["load", "--apply"]);
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        first_apply.get_or_insert_with(|| json["run_id"].as_str().unwrap().to_string());
        applies.push(comparable(&out));
    }
    let after_load = row_counts(fx).await;
    let status = (0..REPEAT)
        .map(|_| comparable_status(&ok(fx, url, &["status"]).stdout))
        .collect();
    let target = first_apply.unwrap();
    let rollback_dry_runs = (0..REPEAT)
        .map(|_| comparable(&ok(fx, url, &["rollback", "--run", &target])))
        .collect();
    let rollback = comparable(&ok(
        fx,
        url,
        &[
            "rollback",
            "--run",
            &target,
            "--apply",
            "--remove-created-users",
        ],
    ));
    // The rows are as before the loads (the columns the load added stay, as do backups).
    let mut restored = fx.checksums(Some(&before)).await;
    restored.remove("schemas");
    let mut before = before;
    before.retain(|k, _| !k.starts_with("columns ") && k != "schemas");
    let restored_to_before = restored == before;
    let log = fx
        .client
        .query(
            "SELECT operation, mode, status FROM cleanmig.population_operation_log ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    Transcript {
        extracts_as_direct,
        dry_runs,
        applies,
        status,
        rollback_dry_runs,
        rollback,
        after_load,
        restored_to_before,
        log,
    }
}

/// Leave the load's temporary helper function (as an earlier version left it, when it did not
/// drop it) on both server connections of the pool: the transactions hold one each.
async fn helper_function_on_every_server_connection(url: &str) {
    let sql = include_str!("../../src/load/sql/drift_keys_function.sql");
    let (a, b) = (support::connect(url).await, support::connect(url).await);
    for c in [&a, &b] {
        c.batch_execute("BEGIN").await.unwrap();
        c.batch_execute(sql).await.unwrap();
    }
    for c in [&a, &b] {
        c.batch_execute("COMMIT").await.unwrap();
    }
}

/// Prepared statements left on each server connection of the pool: the transactions hold one
/// each, and the simple protocol prepares nothing.
async fn statements_left_on_server_connections(url: &str) -> Vec<String> {
    let (a, b) = (support::connect(url).await, support::connect(url).await);
    let mut left = Vec::new();
    for c in [&a, &b] {
        c.batch_execute("BEGIN").await.unwrap();
        for m in c
            .simple_query("SELECT string_agg(name, ', ' ORDER BY name) FROM pg_prepared_statements")
            .await
            .unwrap()
        {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                left.extend(r.get(0).map(str::to_string));
            }
        }
    }
    for c in [&a, &b] {
        c.batch_execute("COMMIT").await.unwrap();
    }
    left
}

/// The same steps on two copies of the fixture, one direct and one through PgBouncer in `mode`.
async fn through_pooler_as_direct(prefix: &str, mode: PoolMode) {
    let direct = fixture(&format!("{prefix}_direct")).await;
    let pooled = fixture(&format!("{prefix}_pooled")).await;
    let bouncer = PgBouncer::start(&support::database_name(&pooled.url), mode);

    if mode == PoolMode::Transaction {
        helper_function_on_every_server_connection(&bouncer.url()).await;
    }

    let expected = every_step(&direct, &direct.url).await;
    let seen = every_step(&pooled, &bouncer.url()).await;

    // The direct run is what it should be.
    assert_eq!(expected.extracts_as_direct, vec![true; REPEAT]);
    assert_eq!(expected.dry_runs[0]["status"], "dry_run_completed");
    assert_eq!(expected.applies[0]["status"], "success");
    assert_ne!(
        expected.applies[0], expected.applies[1],
        "the first apply changes rows"
    );
    assert_eq!(
        expected.applies[1], expected.applies[2],
        "later applies change nothing"
    );
    assert_eq!(expected.rollback["status"], "success");
    assert!(expected.restored_to_before);
    let mut log = vec![("load", "dry_run", "dry_run_completed"); REPEAT];
    log.extend(vec![("load", "apply", "success"); REPEAT]);
    log.extend(vec![("rollback", "dry_run", "dry_run_completed"); REPEAT]);
    log.push(("rollback", "apply", "success"));
    let log: Vec<(String, String, String)> = log
        .into_iter()
        .map(|(o, m, s)| (o.into(), m.into(), s.into()))
        .collect();
    assert_eq!(expected.log, log);

    // Through the pooler: the same, step by step.
    assert_eq!(seen.extracts_as_direct, expected.extracts_as_direct);
    assert_eq!(seen.dry_runs, expected.dry_runs);
    assert_eq!(seen.applies, expected.applies);
    assert_eq!(seen.after_load, expected.after_load);
    assert_eq!(seen.status, expected.status);
    assert_eq!(seen.rollback_dry_runs, expected.rollback_dry_runs);
    assert_eq!(seen.rollback, expected.rollback);
    assert!(seen.restored_to_before);
    assert_eq!(seen.log, expected.log);
    // However lucky the run: no step leaves a named statement on a shared server connection.
    assert_eq!(
        statements_left_on_server_connections(&bouncer.url()).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn pooler_transaction_mode_every_step_works_and_matches_a_direct_connection() {
    // Guards: through Supabase's transaction pooler (PgBouncer, pool_mode = transaction), a load
    // committed and then failed with `prepared statement "s82" already exists`; no step may rely
    // on a named prepared statement or session state outside its transaction.
    through_pooler_as_direct("pooler_tx", PoolMode::Transaction).await;
}

#[tokio::test]
async fn pooler_session_mode_every_step_works_and_matches_a_direct_connection() {
    // Guards: Supabase's session pooler (port 5432) works as a direct connection does.
    through_pooler_as_direct("pooler_session", PoolMode::Session).await;
}

#[tokio::test]
async fn pooler_transaction_mode_a_refused_load_is_logged_failed_and_leaves_no_statement() {
    // Guards: a load that fails inside its transaction (here: a value the app changed since
    // extraction) ends through the transaction pooler as it does directly: refused, logged
    // `failed`, and no prepared statement left on a server connection.
    let fx = fixture("pooler_refused").await;
    let bouncer = PgBouncer::start(&support::database_name(&fx.url), PoolMode::Transaction);
    fx.approve();
    fx.client
        .batch_execute(&format!(
            "UPDATE public.transactions SET status = 'REFUNDED' WHERE id = '{}'",
            "10000000-0000-4000-8000-000000000001"
        ))
        .await
        .unwrap();
    let before = fx.checksums(None).await;
    for args in [&["load"][..], &["load", "--apply"][..]] {
        for _ in 0..REPEAT {
            let out = run(&fx, &bouncer.url(), args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{stderr}");
            assert!(stderr.contains("changed since extraction"), "{stderr}");
            assert!(!stderr.contains("prepared statement"), "{stderr}");
        }
    }
    assert_eq!(fx.checksums(None).await, before);
    let statuses: Vec<String> = fx
        .client
        .query(
            "SELECT status FROM cleanmig.population_operation_log ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, vec!["failed".to_string(); 2 * REPEAT]);
    assert_eq!(
        statements_left_on_server_connections(&bouncer.url()).await,
        Vec::<String>::new()
    );
}
