//! `cleanmig load`, `rollback` and `status` against a real Postgres.

use crate::load_fixture::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn counts(result: &serde_json::Value, table: &str) -> (u64, u64, u64, u64) {
    let t = &result["tables"][table];
    let n = |k: &str| t[k].as_u64().unwrap_or_else(|| panic!("{k} in {result}"));
    (n("inserted"), n("updated"), n("deleted"), n("unchanged"))
}

/// (step, seconds) of every log line that ends in `(<seconds> s)`: the steps of a load or
/// rollback ([`cleanmig::load`]'s `Steps`).
fn timed_steps(stderr: &str) -> Vec<(&str, f64)> {
    stderr
        .lines()
        .filter_map(|l| {
            let (step, secs) = l.strip_suffix(" s)")?.rsplit_once(" (")?;
            Some((step, secs.parse().ok()?))
        })
        .collect()
}

async fn log_rows(fx: &Fixture) -> Vec<(String, String, String, Option<String>)> {
    fx.client
        .query(
            "SELECT operation, mode, status, error FROM cleanmig.population_operation_log ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Start a load that stops inside its COPY (test fault hook) and wait until Postgres shows the
/// COPY running.
async fn start_paused_load(fx: &Fixture) -> Child {
    let child = Command::new(assert_cmd::cargo::cargo_bin("cleanmig"))
        .args(["load", "--apply", "--database-url", &fx.url])
        .env("CLEANMIG_ARTIFACTS", &fx.artifacts)
        .env("CLEANMIG_TEST_FAULT", "pause-in-copy")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..1200 {
        let n = fx
            .count(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cleanmig' \
                 AND datname = current_database() AND query LIKE 'COPY %FROM STDIN%' AND state = 'active'",
            )
            .await;
        if n > 0 {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("the paused load never reached its COPY");
}

/// The backend of the cleanmig session that is in its COPY.
async fn first_pid(fx: &Fixture) -> i64 {
    fx.count(
        "SELECT pid::int8 FROM pg_stat_activity WHERE application_name = 'cleanmig' \
         AND datname = current_database() AND query LIKE 'COPY %FROM STDIN%'",
    )
    .await
}

/// Wait until no cleanmig session is left on the test database.
async fn wait_for_sessions_to_end(fx: &Fixture) {
    for _ in 0..1200 {
        let n = fx
            .count(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cleanmig' \
                 AND datname = current_database()",
            )
            .await;
        if n == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cleanmig sessions did not end");
}

#[tokio::test]
async fn dry_run_leaves_every_table_byte_identical_and_is_logged() {
    // Guards: the default mode changes nothing (not even the schema), yet reports the changes.
    let fx = fixture("load_dry").await;
    fx.approve();
    let before = fx.checksums(None).await;
    let (ok, result, stderr) = fx.load(&[]);
    assert!(ok, "{stderr}");
    assert_eq!(result["status"], "dry_run_completed");
    assert_eq!(counts(&result, "unified_profiles"), (1, 1, 1, 1));
    assert_eq!(counts(&result, "transactions"), (1, 1, 1, 0));
    assert_eq!(counts(&result, "enrollments"), (2, 0, 1, 1));
    assert_eq!(result["auth_users_created"], 1);
    assert_eq!(result["validation"]["passed"], true);
    assert!(stderr.contains("dry run"), "{stderr}");
    assert_eq!(fx.checksums(None).await, before);
    let log = log_rows(&fx).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].1.as_str(), log[0].2.as_str()),
        ("dry_run", "dry_run_completed")
    );
}

#[tokio::test]
async fn apply_keeps_every_customer_removes_test_accounts_and_a_second_apply_changes_nothing() {
    // Guards: real customers keep their auth ids and app-owned values; test rows go; idempotence.
    let fx = fixture("load_apply").await;
    fx.approve();
    let auth_before = fx
        .client
        .query(
            "SELECT id::text, md5(u::text) FROM auth.users u ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect::<Vec<_>>();
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    assert_eq!(result["status"], "success");
    assert!(result["backup_schema"]
        .as_str()
        .unwrap()
        .starts_with("cleanmig_backup_"));

    // Every existing auth user unchanged; Carol created with her identity.
    for (id, md5) in &auth_before {
        let now = fx
            .count(&format!(
                "SELECT count(*) FROM auth.users u WHERE id = '{id}' AND md5(u::text) = '{md5}'"
            ))
            .await;
        assert_eq!(now, 1, "auth user {id} changed");
    }
    assert_eq!(
        fx.count(&format!(
            "SELECT count(*) FROM auth.identities WHERE user_id = '{CAROL}'"
        ))
        .await,
        1
    );
    // Profiles: the customers, with their auth ids; the test account gone.
    let ids: Vec<String> = fx
        .client
        .query("SELECT id::text FROM unified_profiles ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![ALICE, BOB, CAROL]);
    assert_eq!(
        fx.count(&format!(
            "SELECT count(*) FROM transactions WHERE id = '{TX_TEST}' OR user_id = '{TESTER}'"
        ))
        .await,
        0
    );
    assert_eq!(
        fx.count(&format!(
            "SELECT count(*) FROM enrollments WHERE id = '{EN_TEST}'"
        ))
        .await,
        0
    );
    // App-owned columns kept, source-owned columns updated.
    let alice = fx
        .client
        .query_one(
            &format!("SELECT last_name, tier, tier_assignment_notes, last_active_at IS NOT NULL FROM unified_profiles WHERE id = '{ALICE}'"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(alice.get::<_, String>(0), "Santos");
    assert_eq!(alice.get::<_, String>(1), "premium");
    assert_eq!(alice.get::<_, String>(2), "upgraded by support");
    assert!(alice.get::<_, bool>(3));
    let en = fx
        .client
        .query_one(
            &format!("SELECT progress::text, notes FROM enrollments WHERE id = '{EN_ALICE}'"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(en.get::<_, String>(0), "50");
    assert_eq!(en.get::<_, String>(1), "halfway through");
    assert_eq!(
        fx.count(&format!(
            "SELECT count(*) FROM enrollments WHERE id IN ('{EN_BOB}', '{EN_CAROL}')"
        ))
        .await,
        2
    );
    assert_eq!(
        fx.count(&format!(
            "SELECT count(*) FROM transactions WHERE id = '{TX_CAROL}' AND amount = 1500.50"
        ))
        .await,
        1
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'transactions' AND column_name IN ('api_source','last_api_sync_at','api_sync_version','processed_at','fiscal_year','fiscal_quarter')").await,
        6
    );
    assert_eq!(fx.count("SELECT count(*) FROM lesson_progress").await, 1);

    // Second apply of the same approval: nothing inserted, updated or deleted; no timestamp moves.
    let after_first = fx.checksums(None).await;
    let (ok, second, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    for table in ["unified_profiles", "transactions", "enrollments"] {
        let (i, u, d, _) = counts(&second, table);
        assert_eq!((i, u, d), (0, 0, 0), "{table}: {second}");
    }
    assert_eq!(second["auth_users_created"], 0);
    // It found the tables as the first run left them: no file copied, no backup made.
    assert_eq!(second["unchanged_since_run"], result["run_id"]);
    assert!(second["backup_schema"].is_null(), "{second}");
    assert_eq!(fx.checksums(None).await, after_first);
    let log = log_rows(&fx).await;
    assert_eq!(log.len(), 2);
    assert!(
        log.iter().all(|l| l.1 == "apply" && l.2 == "success"),
        "{log:?}"
    );
}

#[tokio::test]
async fn tampered_artifact_is_refused_by_name_and_changes_nothing() {
    // Guards: what is loaded is exactly what was approved.
    let fx = fixture("load_tamper").await;
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert!(stderr.contains("cleanmig approve"), "{stderr}");
    assert_eq!(result["status"], "failed");
    fx.approve();
    let before = fx.checksums(None).await;
    let path = fx.artifacts.join("stage/enrollments.parquet");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(0);
    std::fs::write(&path, bytes).unwrap();
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert!(
        stderr.contains("artifact stage/enrollments.parquet changed after approval"),
        "{stderr}"
    );
    assert_eq!(result["status"], "failed");
    assert_eq!(fx.checksums(None).await, before);
    let log = log_rows(&fx).await;
    assert_eq!(log.len(), 2);
    assert!(log[1]
        .3
        .as_deref()
        .unwrap()
        .contains("stage/enrollments.parquet"));
}

#[tokio::test]
async fn drifted_source_is_refused_naming_the_table() {
    // Guards: sources that changed after extraction are not loaded from stale artifacts.
    let fx = fixture("load_drift").await;
    fx.approve();
    fx.client
        .batch_execute("UPDATE public.xendit SET amount = 999 WHERE external_id = 'ext-4'")
        .await
        .unwrap();
    let before = fx.checksums(None).await;
    let (ok, _, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert!(
        stderr.contains("table public.xendit changed since extraction"),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, before);
}

#[tokio::test]
async fn destination_rows_gained_since_extraction_are_refused_and_named() {
    // Guards: a sign-up after the review is not silently deleted by the load.
    let fx = fixture("load_signup").await;
    fx.approve();
    fx.client
        .batch_execute(
            "INSERT INTO auth.users (id, email, aud, role) VALUES ('f5555555-5555-4555-8555-555555555555', 'new@example.com', 'authenticated', 'authenticated'); \
             INSERT INTO public.unified_profiles (id, email) VALUES ('f5555555-5555-4555-8555-555555555555', 'new@example.com');",
        )
        .await
        .unwrap();
    let before = fx.checksums(None).await;
    let (ok, _, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert!(stderr.contains("changed since extraction"), "{stderr}");
    assert!(
        stderr.contains("id=f5555555-5555-4555-8555-555555555555"),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, before);
}

#[tokio::test]
async fn a_table_locked_by_another_session_fails_fast_with_lock_timeout() {
    // Guards: a busy table makes the load fail quickly and clearly instead of hanging.
    let fx = fixture("load_locked").await;
    fx.approve();
    let before = fx.checksums(None).await;
    let holder = crate::support::connect(&fx.url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE public.enrollments IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let (ok, _, stderr) = fx.load(&["--apply", "--lock-timeout-ms", "200"]);
    assert!(!ok);
    assert!(stderr.contains("locked by another session"), "{stderr}");
    assert!(stderr.contains("200 ms"), "{stderr}");
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(fx.checksums(None).await, before);
}

#[tokio::test]
async fn a_run_compiles_no_statement_and_its_settings_end_with_its_transaction() {
    // Guards: JIT compiling every whole-table statement cost the load seconds; and a setting
    // that outlived the run would stay on a pooler's shared server connection.
    let url = crate::support::supabase_database("load_settings", false).await;
    let mut client = crate::support::connect(&url).await;
    client.batch_execute("SET jit = on").await.unwrap();
    let setting = "SELECT current_setting('jit'), current_setting('lock_timeout'), \
                   current_setting('statement_timeout')";
    let timeouts = cleanmig::load::Timeouts {
        lock_ms: 1234,
        statement_ms: 56789,
    };
    let tx = cleanmig::load::guard::begin(&mut client, timeouts)
        .await
        .unwrap();
    let row = tx.query_one(setting, &[]).await.unwrap();
    let inside: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        inside,
        ("off".into(), "1234ms".into(), "56789ms".into()),
        "as the run's role"
    );
    tx.commit().await.unwrap();
    let row = client.query_one(setting, &[]).await.unwrap();
    let after: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(after, ("on".into(), "0".into(), "0".into()));
}

#[tokio::test]
async fn foreign_key_dependents_refuse_by_default_and_follow_the_chosen_policy() {
    // Guards: nothing is deleted by a cascade nobody asked for (user_tags cascades).
    let fx = fixture("load_dependents").await;
    fx.client
        .batch_execute(&format!(
            "INSERT INTO public.user_tags (user_id, tag) VALUES ('{TESTER}', 'qa'); \
             INSERT INTO public.purchase_leads (email, user_id, transaction_id) VALUES ('qa+1@test.com', '{TESTER}', '{TX_TEST}')"
        ))
        .await
        .unwrap();
    // Dependent tables are not drift-checked; re-approval is not needed.
    fx.approve();
    let before = fx.checksums(None).await;
    let (ok, _, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert!(
        stderr.contains("public.user_tags: 1 rows reference unified_profiles"),
        "{stderr}"
    );
    assert!(stderr.contains("ON DELETE CASCADE"), "{stderr}");
    assert!(stderr.contains("public.purchase_leads"), "{stderr}");
    assert!(stderr.contains(&format!("user_id={TESTER}")), "{stderr}");
    assert!(stderr.contains("--dependents"), "{stderr}");
    assert_eq!(fx.checksums(None).await, before);

    // keep: the referenced profile and transaction stay (dry run).
    let (ok, result, stderr) = fx.load(&["--dependents", "keep"]);
    assert!(ok, "{stderr}");
    assert_eq!(result["tables"]["unified_profiles"]["kept"], 1);
    assert_eq!(result["tables"]["transactions"]["kept"], 1);
    assert_eq!(fx.checksums(None).await, before);

    // delete: dependents go first, then the rows; rollback brings everything back.
    let (ok, result, stderr) = fx.load(&["--apply", "--dependents", "delete"]);
    assert!(ok, "{stderr}");
    assert_eq!(fx.count("SELECT count(*) FROM user_tags").await, 0);
    assert_eq!(fx.count("SELECT count(*) FROM purchase_leads").await, 0);
    let run = result["run_id"].as_str().unwrap().to_string();
    let out = fx.cmd(&[
        "rollback",
        "--run",
        &run,
        "--apply",
        "--remove-created-users",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut now = fx.checksums(Some(&before)).await;
    let mut expected = before.clone();
    expected.retain(|k, _| !k.starts_with("columns ") && k != "schemas");
    now.remove("schemas");
    assert_eq!(now, expected);

    // keep, applied twice: the test account stays with its tag; the second run changes nothing.
    let (ok, _, stderr) = fx.load(&["--apply", "--dependents", "keep"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        fx.count(&format!(
            "SELECT count(*) FROM unified_profiles WHERE id = '{TESTER}'"
        ))
        .await,
        1
    );
    assert_eq!(fx.count("SELECT count(*) FROM user_tags").await, 1);
    let (ok, again, stderr) = fx.load(&["--apply", "--dependents", "keep"]);
    assert!(ok, "{stderr}");
    for table in ["unified_profiles", "transactions", "enrollments"] {
        let (i, u, d, _) = counts(&again, table);
        assert_eq!((i, u, d), (0, 0, 0), "{table}: {again}");
    }
}

#[tokio::test]
async fn a_second_concurrent_load_is_refused_not_queued() {
    // Guards: two loads never interleave; the second one says why it stopped.
    let fx = fixture("load_concurrent").await;
    fx.approve();
    let before = fx.checksums(None).await;
    let mut first = start_paused_load(&fx).await;
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert!(
        stderr.contains("another cleanmig load or rollback is running"),
        "{stderr}"
    );
    // It names the session that holds the run lock.
    assert!(
        stderr.contains(&format!(
            "(backend pid {}, cleanmig as ",
            first_pid(&fx).await
        )),
        "{stderr}"
    );
    assert_eq!(result["status"], "failed");
    first.kill().unwrap();
    first.wait().unwrap();
    wait_for_sessions_to_end(&fx).await;
    assert_eq!(fx.checksums(None).await, before);
}

#[tokio::test]
async fn a_load_killed_in_the_middle_of_its_copy_leaves_the_database_unchanged() {
    // Guards: SIGKILL at any moment = nothing happened (one transaction), even after the schema
    // alignment and the backup ran.
    let fx = fixture("load_killed").await;
    fx.approve();
    let before = fx.checksums(None).await;
    let mut child = start_paused_load(&fx).await;
    // SIGKILL (Child::kill sends SIGKILL on Unix).
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for_sessions_to_end(&fx).await;
    assert_eq!(fx.checksums(None).await, before);
    let log = log_rows(&fx).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].2, "running",
        "a killed run stays visibly unfinished in the log"
    );
    // A run in another database of the same server holds that database's lock, not this
    // one's: it does not make the killed run look alive.
    let other = fixture("load_killed_other").await;
    other.approve();
    let mut running_elsewhere = start_paused_load(&other).await;
    let out = fx.cmd(&["status"]);
    running_elsewhere.kill().unwrap();
    running_elsewhere.wait().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unfinished (killed; nothing committed)"),
        "{text}"
    );
    // And the next load runs normally.
    let (ok, _, stderr) = fx.load(&[]);
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn rollback_restores_the_exact_previous_contents() {
    // Guards: launch day can be undone from the run's backup.
    let fx = fixture("load_rollback").await;
    fx.approve();
    let before = fx.checksums(None).await;
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    let run = result["run_id"].as_str().unwrap().to_string();
    let loaded = fx.checksums(None).await;

    // Dry run by default.
    let out = fx.cmd(&["rollback", "--run", &run]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["status"], "dry_run_completed");
    assert_eq!(fx.checksums(None).await, loaded);

    // A created user who already signed in is never removed.
    fx.client
        .batch_execute(&format!(
            "UPDATE auth.users SET last_sign_in_at = now() WHERE id = '{CAROL}'"
        ))
        .await
        .unwrap();
    let out = fx.cmd(&["rollback", "--run", &run, "--remove-created-users"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["auth_users_removed"], 0);
    assert_eq!(dry["auth_users_kept_signed_in"], 1);
    fx.client
        .batch_execute(&format!(
            "UPDATE auth.users SET last_sign_in_at = NULL WHERE id = '{CAROL}'"
        ))
        .await
        .unwrap();

    let out = fx.cmd(&[
        "rollback",
        "--run",
        &run,
        "--apply",
        "--remove-created-users",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["status"], "success");
    assert_eq!(done["auth_users_removed"], 1);
    let mut now = fx.checksums(Some(&before)).await;
    let mut expected = before.clone();
    expected.retain(|k, _| !k.starts_with("columns ") && k != "schemas");
    now.remove("schemas");
    assert_eq!(now, expected);
    let log = log_rows(&fx).await;
    let ops: Vec<(&str, &str)> = log.iter().map(|l| (l.0.as_str(), l.2.as_str())).collect();
    assert_eq!(
        ops,
        vec![
            ("load", "success"),
            ("rollback", "dry_run_completed"),
            ("rollback", "dry_run_completed"),
            ("rollback", "success")
        ]
    );

    // Status shows the runs.
    let out = fx.cmd(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&run), "{text}");
    assert!(text.contains("artifacts match it"), "{text}");
    assert!(text.contains("public.xendit"), "{text}");
}

#[tokio::test]
async fn ctrl_c_while_waiting_for_a_lock_rolls_back_and_is_logged() {
    // Guards: Ctrl-C in the maintenance window leaves the database exactly as before.
    let fx = fixture("load_ctrl_c").await;
    fx.approve();
    let before = fx.checksums(None).await;
    let holder = crate::support::connect(&fx.url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE public.enrollments IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let child = fx.spawn(&["load", "--apply", "--lock-timeout-ms", "600000"], None);
    let waiting = fx.wait_for_lock_wait().await;
    // SIGINT is what Ctrl-C sends.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(waiting, "the load never waited for the lock");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "failed");
    holder.batch_execute("ROLLBACK").await.unwrap();
    wait_for_sessions_to_end(&fx).await;
    assert_eq!(fx.checksums(None).await, before);
    let log = log_rows(&fx).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].2, "failed");
    assert!(log[0].3.as_deref().unwrap().contains("interrupted"));
}

async fn index_names(fx: &Fixture) -> String {
    fx.client
        .query_one(
            "SELECT string_agg(schemaname || '.' || indexname, ',' ORDER BY 1) FROM pg_indexes \
             WHERE schemaname IN ('public', 'auth') AND tablename <> 'population_operation_log'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn unindexed_foreign_keys_are_indexed_for_the_run_and_the_indexes_leave_with_it() {
    // Guards: a DELETE checks each referencing table once per deleted row; without an index
    // that is a scan per row (quadratic). The run's indexes must not outlive it.
    let fx = fixture("load_fk_index").await;
    fx.client
        .batch_execute(&format!(
            "INSERT INTO public.purchase_leads (email, user_id, transaction_id) VALUES ('qa+1@test.com', '{TESTER}', '{TX_TEST}')"
        ))
        .await
        .unwrap();
    fx.approve();
    let indexes = index_names(&fx).await;
    // enrollments.transaction_id, lesson_progress.enrollment_id, and user_id and transaction_id
    // of purchase_leads and ebook_contacts have no index of their own in the Supabase schema.
    let (ok, result, stderr) = fx.load(&["--apply", "--dependents", "delete"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("6 unindexed foreign keys indexed for the run"),
        "{stderr}"
    );
    // The test payment went in the first deletes: no index had to come back for the last.
    assert!(!stderr.contains("made again"), "{stderr}");
    assert_eq!(result["dependents"]["deleted"][0]["rows"], 1, "{result}");
    assert_eq!(index_names(&fx).await, indexes);
    // Rollback deletes auth users too when asked: transactions.user_id joins the list.
    let run = result["run_id"].as_str().unwrap().to_string();
    let out = fx.cmd(&[
        "rollback",
        "--run",
        &run,
        "--apply",
        "--remove-created-users",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // A step of the rollback like its others, with the seconds since its start.
    assert!(
        timed_steps(&stderr)
            .iter()
            .any(|(step, _)| step.ends_with("7 unindexed foreign keys indexed for the run")),
        "{stderr}"
    );
    assert_eq!(index_names(&fx).await, indexes);
}

#[tokio::test]
async fn the_runs_indexes_are_set_aside_while_it_writes_and_come_back_for_the_deletes_that_need_them(
) {
    // Guards: an index on a table the run writes costs every row it writes, so the run drops
    // its own while it updates and inserts; a delete that comes after still has it (without, the
    // check of each deleted row scans the referencing table).
    let fx = fixture("load_fk_index_aside").await;
    // Alice's enrollment points at the test payment until the load points it back at hers: the
    // test payment can only go in the last deletes, after that update.
    fx.client
        .batch_execute(&format!(
            "UPDATE public.enrollments SET transaction_id = '{TX_TEST}' WHERE id = '{EN_ALICE}'"
        ))
        .await
        .unwrap();
    fx.extract_again();
    fx.approve();
    let indexes = index_names(&fx).await;
    let (ok, result, stderr) = fx.load(&["--apply", "-v"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("1 of the run's foreign-key indexes set aside while rows are written"),
        "{stderr}"
    );
    assert!(
        timed_steps(&stderr).iter().any(
            |(step, _)| step.ends_with("1 foreign-key indexes made again for the last deletes")
        ),
        "{stderr}"
    );
    assert_eq!(counts(&result, "transactions").2, 1, "{result}");
    let row = fx
        .client
        .query_one(
            &format!(
                "SELECT (SELECT transaction_id::text FROM public.enrollments WHERE id = '{EN_ALICE}'), \
                        (SELECT count(*) FROM public.transactions WHERE id = '{TX_TEST}')"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("10000000-0000-4000-8000-000000000001".to_string(), 0)
    );
    assert_eq!(index_names(&fx).await, indexes);
}

#[tokio::test]
async fn a_trigger_that_changes_an_existing_auth_user_fails_the_validation() {
    // Guards: the load only ever adds auth users and identities; if anything in the database
    // (here a profile-sync trigger) rewrites an existing one during the load, nothing commits.
    let fx = fixture("load_auth_guard").await;
    fx.client
        .batch_execute(
            "CREATE FUNCTION public.sync_profile_to_auth() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN UPDATE auth.users SET raw_user_meta_data = coalesce(raw_user_meta_data, '{}') \
                   || jsonb_build_object('first_name', NEW.first_name) WHERE id = NEW.id; RETURN NEW; END $$; \
             CREATE TRIGGER sync_profile_to_auth AFTER UPDATE ON public.unified_profiles \
             FOR EACH ROW EXECUTE FUNCTION public.sync_profile_to_auth()",
        )
        .await
        .unwrap();
    fx.approve();
    let before = fx.checksums(None).await;
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert_eq!(result["status"], "failed");
    assert!(
        stderr.contains("no existing auth user lost or changed (1 failing)"),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, before);
}

#[tokio::test]
async fn a_trigger_that_rewrites_a_loaded_value_fails_the_validation_with_its_rows_counted() {
    // Guards the check that every staged row is in place as approved. A table whose fingerprint
    // equals its staged rows' is passed on it; one whose fingerprint differs is compared row by
    // row, so the count of failing rows is exact.
    let fx = fixture("load_rewritten_value").await;
    fx.client
        .batch_execute(
            "CREATE FUNCTION public.round_up_amount() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN NEW.amount := NEW.amount + 1; RETURN NEW; END $$; \
             CREATE TRIGGER round_up_amount BEFORE INSERT OR UPDATE ON public.transactions \
             FOR EACH ROW EXECUTE FUNCTION public.round_up_amount()",
        )
        .await
        .unwrap();
    fx.approve();
    let before = fx.checksums(None).await;
    let (ok, result, stderr) = fx.load(&["--apply", "-v"]);
    assert!(!ok);
    assert_eq!(result["status"], "failed");
    // The one inserted and the one updated transaction.
    assert!(
        stderr.contains("every staged transactions row is loaded as approved (2 failing)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("every staged unified_profiles row")
            && !stderr.contains("every staged enrollments row"),
        "{stderr}"
    );
    assert!(
        stderr.contains("transactions: staged rows in place, compared row by row"),
        "{stderr}"
    );
    assert!(
        stderr.contains("enrollments: staged rows in place, compared by fingerprint"),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, before);

    // Without the trigger the same approval loads, every table passed on its fingerprint.
    fx.client
        .batch_execute("DROP TRIGGER round_up_amount ON public.transactions")
        .await
        .unwrap();
    let (ok, result, stderr) = fx.load(&["--apply", "-v"]);
    assert!(ok, "{stderr}");
    assert_eq!(result["validation"]["passed"], true);
    for table in ["unified_profiles", "transactions", "enrollments"] {
        assert!(
            stderr.contains(&format!(
                "{table}: staged rows in place, compared by fingerprint"
            )),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn the_pipelines_load_checks_run_as_approved_and_cannot_write() {
    // Guards: pipeline/load/ runs on the live tables inside the load's transaction. What it
    // finds refuses the commit; a statement of it that would write fails instead; and it runs
    // as approved, not as edited since.
    let fx = fixture("load_pipeline_checks").await;
    let stage_dir = fx.artifacts.join("stage");
    let set_checks = |sql: &str| {
        let mut manifest = cleanmig::artifacts::Manifest::read(&stage_dir).unwrap();
        manifest.load_validation.as_mut().unwrap().checks = sql.into();
        manifest.write(&stage_dir).unwrap();
    };
    let before = fx.checksums(None).await;

    // A check of the deployment's own, which the load's result fails.
    set_checks(&format!(
        "SELECT 'no profile of Alice remains', count(*) FROM public.unified_profiles WHERE id = '{ALICE}'"
    ));
    fx.approve();
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert_eq!(result["status"], "failed");
    assert!(
        stderr.contains("no profile of Alice remains (1 failing)"),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, before);

    // A check that would delete: read-only, it fails, and nothing is written.
    set_checks(
        "WITH gone AS (DELETE FROM public.enrollments RETURNING 1) \
         SELECT 'deletes enrollments', count(*) FROM gone",
    );
    fx.approve();
    let (ok, _, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert!(
        stderr.contains("pipeline/load/checks.sql (as approved) failed to run")
            && stderr.contains("read-only transaction"),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, before);

    // Edited after approval: refused before it runs.
    set_checks("SELECT 'edited', 0::bigint");
    let (ok, _, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert!(stderr.contains("stage/manifest.json"), "{stderr}");
    assert_eq!(fx.checksums(None).await, before);
}

#[tokio::test]
async fn new_rows_are_inserted_in_the_order_of_the_largest_parents_foreign_key() {
    // Guards the insert order: the foreign key to the parent with the most rows, and only one
    // whose columns the clean rows carry; the missing rows go in in that key's order (the clean
    // rows lie in the opposite order), each as staged.
    use cleanmig::load::insert_checks::InsertChecks;
    use cleanmig::load::reconcile::{Reconcile, UpdateMode};
    let url = crate::support::fresh_database("load_insert_order").await;
    let mut client = crate::support::connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE small (id int PRIMARY KEY); \
             CREATE TABLE big (id int PRIMARY KEY); \
             CREATE TABLE biggest (id int PRIMARY KEY); \
             INSERT INTO small SELECT 1; \
             INSERT INTO big SELECT generate_series(1, 500); \
             INSERT INTO biggest SELECT generate_series(1, 1000); \
             CREATE TABLE child (id int PRIMARY KEY, \
               small_id int REFERENCES small, big_id int REFERENCES big, \
               biggest_id int REFERENCES biggest); \
             ANALYZE small, big, biggest; \
             INSERT INTO child VALUES (1, 1, 7, NULL); \
             CREATE TABLE clean AS SELECT g AS id, 1 AS small_id, g AS big_id, 501 - g AS biggest_id \
               FROM generate_series(1, 500) g",
        )
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let all = ["id", "small_id", "big_id", "biggest_id"].map(String::from);
    let reconcile = |columns: &'static [&'static str]| {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let tx = &tx;
        async move {
            Reconcile::new(
                tx,
                "public.child",
                "id",
                "clean",
                &columns,
                &[],
                UpdateMode::Restore,
            )
            .await
            .unwrap()
        }
    };
    let r = reconcile(&["id", "small_id", "big_id", "biggest_id"]).await;
    assert_eq!(r.insert_order, vec!["biggest_id".to_string()]);
    // Without the largest parent's column, the next largest parent's key.
    assert_eq!(
        reconcile(&["id", "small_id", "big_id"]).await.insert_order,
        vec!["big_id".to_string()]
    );
    assert!(reconcile(&["id"]).await.insert_order.is_empty());
    let checks = InsertChecks::probe(&tx)
        .await
        .unwrap()
        .table(&tx, "public.child")
        .await
        .unwrap();
    assert_eq!(r.insert(&tx, &checks).await.unwrap(), 499);
    let rows: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM child c JOIN clean s USING ({})",
                all.join(", ")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 499, "every missing row inserted as staged");
    let in_key_order: bool = tx
        .query_one(
            "SELECT array_agg(biggest_id ORDER BY ctid) = array_agg(biggest_id ORDER BY biggest_id) \
             FROM child WHERE id > 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(in_key_order, "rows written in the order of biggest_id");
}

#[tokio::test]
async fn a_load_prints_each_step_with_the_time_since_it_started_and_each_tables_writes_apart() {
    // Guards the load's breakdown, which `make bench` reads: staging, every check and each
    // table's update and insert are lines of their own, in the order they run, each ending in
    // the seconds since the run started.
    let fx = fixture("load_steps").await;
    fx.approve();
    let (ok, _, stderr) = fx.load(&["--apply", "--dependents", "delete"]);
    assert!(ok, "{stderr}");
    let expected = [
        "transaction started, advisory lock held, destination tables locked against writes",
        "approved files unchanged, sources unchanged since extraction",
        "approved rows copied into temporary tables",
        "destination tables gained or lost no rows since extraction",
        "rows to delete found",
        "no value the load writes changed since extraction",
        "backup in schema cleanmig_backup_",
        "unindexed foreign keys indexed for the run",
        "dependent rows deleted",
        "auth users created",
        "deleted: rows nothing else references",
        "unified_profiles: rows updated",
        "unified_profiles: rows inserted",
        "transactions: rows updated",
        "transactions: rows inserted",
        "enrollments: rows updated",
        "enrollments: rows inserted",
        "deleted: the rest",
        "what the run wrote recorded in its backup",
        "validation pack passed",
        "resulting state recorded",
    ];
    let steps = timed_steps(&stderr);
    let mut last = 0.0;
    let mut at = 0;
    for want in expected {
        let found = steps[at..]
            .iter()
            .position(|(step, _)| step.contains(want))
            .unwrap_or_else(|| panic!("no step `{want}` after the previous one:\n{stderr}"));
        let secs = steps[at + found].1;
        assert!(
            secs >= last,
            "`{want}` at {secs} s, before {last} s:\n{stderr}"
        );
        (last, at) = (secs, at + found + 1);
    }
    assert_eq!(at, steps.len(), "steps nobody expects:\n{stderr}");
}

#[tokio::test]
async fn the_validation_figures_count_a_transaction_without_a_status_as_not_paid() {
    // An app's own schema may allow a NULL status, which `NOT IN (...)` alone does not count:
    // the figure would say fewer transactions are unpaid than are.
    let url = crate::support::fresh_database("seed_figures").await;
    let client = crate::support::connect(&url).await;
    client
        .batch_execute(
            "CREATE SCHEMA auth;
             CREATE TABLE auth.users (id uuid PRIMARY KEY);
             CREATE TABLE public.unified_profiles (id uuid PRIMARY KEY, email text, first_name text, last_name text);
             CREATE TABLE public.transactions (id int PRIMARY KEY, status text, user_id uuid, amount numeric);
             CREATE TABLE public.enrollments (id int PRIMARY KEY, user_id uuid, transaction_id int, course_id int);
             INSERT INTO public.transactions VALUES
               (1, 'PAID', NULL, 10), (2, 'settled', NULL, 20), (3, 'PENDING', NULL, 30), (4, NULL, NULL, 40);",
        )
        .await
        .unwrap();
    let figures: String = client
        .query_one(include_str!("../../pipeline/load/figures.sql"), &[])
        .await
        .unwrap()
        .get(0);
    let figures: serde_json::Value = serde_json::from_str(&figures).unwrap();
    assert_eq!(figures["transactions"]["transaction_count"], 4);
    assert_eq!(
        figures["transactions"]["non_paid_transactions"], 2,
        "{figures}"
    );
}
