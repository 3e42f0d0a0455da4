//! Launch day beside a live app: each test starts from an approved review, then writes what the
//! app would write, and checks that nothing the app wrote is lost, reverted or misreported.

use crate::load_fixture::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

const TX_ALICE: &str = "10000000-0000-4000-8000-000000000001";
const DANA: &str = "d5555555-5555-4555-8555-555555555555";

fn without_schemas(mut sums: BTreeMap<String, String>) -> BTreeMap<String, String> {
    sums.remove("schemas");
    sums
}

async fn log_status(fx: &Fixture, run_id: &str) -> String {
    fx.client
        .query_one(
            "SELECT status FROM cleanmig.population_operation_log WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0)
}

fn status_output(fx: &Fixture) -> String {
    let out = fx.cmd(&["status"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn values_the_app_changed_after_extraction_refuse_the_load_and_are_listed() {
    // Guards: a refund, an email change or a cancelled enrollment recorded after the review is
    // never written back over by the load.
    let fx = fixture("live_value_drift").await;
    fx.approve();
    fx.client
        .batch_execute(&format!(
            "UPDATE public.transactions SET status = 'REFUNDED', refunded_at = '2026-11-20 10:00:00+00' WHERE id = '{TX_ALICE}';
             UPDATE public.unified_profiles SET email = 'bob.reyes@example.com' WHERE id = '{BOB}';
             UPDATE public.enrollments SET status = 'cancelled' WHERE id = '{EN_ALICE}';"
        ))
        .await
        .unwrap();
    let before = fx.checksums(None).await;
    for args in [&[][..], &["--apply"][..]] {
        let (ok, result, stderr) = fx.load(args);
        assert!(!ok, "{stderr}");
        assert_eq!(result["status"], "failed");
        assert!(stderr.contains("changed since extraction"), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "public.transactions {TX_ALICE}: status 'PAID' -> now 'REFUNDED'"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "public.transactions {TX_ALICE}: refunded_at NULL -> now"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "public.unified_profiles {BOB}: email 'b***@example.com' -> now 'b***@example.com'"
            )),
            "{stderr}"
        );
        assert!(
            !stderr.contains("bob.reyes@"),
            "emails are masked: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "public.enrollments {EN_ALICE}: status 'active' -> now 'cancelled'"
            )),
            "{stderr}"
        );
        assert_eq!(fx.checksums(None).await, before);
    }
    // The full list, emails and all, is in a private file.
    let dir = fx.artifacts.join("load");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy()
                .ends_with("-changed-since-extraction.json")
        })
        .unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("bob.reyes@example.com"), "{text}");
}

#[tokio::test]
async fn a_value_changed_in_the_last_table_alone_is_found_there() {
    // Guards the row-hash shortcut, asked for every table at once: each table's answer is its
    // own, so that the tables before it, unchanged, do not hide the one that changed.
    let fx = fixture("live_value_drift_last").await;
    fx.approve();
    fx.client
        .batch_execute(&format!(
            "UPDATE public.enrollments SET status = 'cancelled' WHERE id = '{EN_ALICE}'"
        ))
        .await
        .unwrap();
    let before = fx.checksums(None).await;
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(!ok, "{stderr}");
    assert_eq!(result["status"], "failed");
    assert!(
        stderr.contains(&format!(
            "public.enrollments {EN_ALICE}: status 'active' -> now 'cancelled'"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("public.transactions ") && !stderr.contains("public.unified_profiles "),
        "only the enrollment changed: {stderr}"
    );
    assert_eq!(fx.checksums(None).await, before);
}

#[tokio::test]
async fn changes_to_app_owned_columns_after_extraction_load_and_are_kept() {
    // Guards: progress and tiers the app keeps writing do not block the launch and survive it.
    let fx = fixture("live_app_owned").await;
    fx.approve();
    fx.client
        .batch_execute(&format!(
            "UPDATE public.enrollments SET progress = 75, last_activity_at = '2026-11-21 08:00:00+00' WHERE id = '{EN_ALICE}';
             UPDATE public.unified_profiles SET tier = 'premium', last_active_at = '2026-11-21 08:00:00+00' WHERE id = '{BOB}';"
        ))
        .await
        .unwrap();
    let (ok, result, stderr) = fx.load(&["--apply", "-v"]);
    assert!(ok, "{stderr}");
    assert_eq!(result["status"], "success");
    // The extract's row hashes leave out app-owned columns: the rows the app touched hash as
    // at extraction, so no extracted row is copied back to compare.
    for table in ["public.unified_profiles", "public.enrollments"] {
        assert!(
            stderr.contains(&format!(
                "{table}: every row the load overwrites or deletes hashes as at extraction"
            )),
            "{stderr}"
        );
    }
    let row = fx
        .client
        .query_one(
            &format!(
                "SELECT (SELECT progress::text FROM public.enrollments WHERE id = '{EN_ALICE}'), \
                        (SELECT tier FROM public.unified_profiles WHERE id = '{BOB}')"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("75".to_string(), "premium".to_string())
    );
}

const NEW_CUSTOMER: &str = r#"
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
  confirmation_token, recovery_token, email_change_token_new, email_change, created_at, updated_at)
VALUES ('00000000-0000-0000-0000-000000000000', 'd5555555-5555-4555-8555-555555555555', 'authenticated',
  'authenticated', 'dana@example.com', '', now(), '', '', '', '', now(), now());
INSERT INTO public.unified_profiles (id, email, first_name, last_name, created_at, updated_at)
VALUES ('d5555555-5555-4555-8555-555555555555', 'dana@example.com', 'Dana', 'Lim', now(), now());
INSERT INTO public.transactions (id, user_id, amount, currency, status, payment_provider, payment_provider_id)
VALUES ('10000000-0000-4000-8000-000000000005', 'd5555555-5555-4555-8555-555555555555', 1000, 'PHP', 'PAID', 'xendit', 'ext-5');
INSERT INTO public.enrollments (id, user_id, course_id, transaction_id, status)
VALUES ('20000000-0000-4000-8000-000000000005', 'd5555555-5555-4555-8555-555555555555',
        '00000000-0000-4000-8000-00000000c001', '10000000-0000-4000-8000-000000000005', 'active');
"#;

#[tokio::test]
async fn rollback_undoes_the_load_only_and_never_what_the_app_wrote_since() {
    // Guards: a customer who signed up after the launch, progress made since, and an edit of a
    // row the load wrote all survive a rollback; the rollback can itself be rolled back.
    let fx = fixture("live_rollback").await;
    fx.approve();
    let before_load = without_schemas(fx.checksums(None).await);
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    let load_run = result["run_id"].as_str().unwrap().to_string();

    // The app keeps working.
    fx.client.batch_execute(NEW_CUSTOMER).await.unwrap();
    fx.client
        .batch_execute(&format!(
            "UPDATE public.enrollments SET progress = 80 WHERE id = '{EN_ALICE}';
             UPDATE public.unified_profiles SET first_name = 'Alicia' WHERE id = '{ALICE}';"
        ))
        .await
        .unwrap();
    let live = fx.checksums(None).await;

    // A row the load wrote was edited since: refused, listed, nothing changed.
    let out = fx.cmd(&["rollback", "--run", &load_run, "--apply"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "public.unified_profiles {ALICE}: first_name 'Alice' -> now 'Alicia'"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("never overwrites what the app wrote"),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, live);

    // Once that edit is settled, the rollback undoes the load and keeps everything else.
    fx.client
        .batch_execute(&format!(
            "UPDATE public.unified_profiles SET first_name = 'Alice' WHERE id = '{ALICE}'"
        ))
        .await
        .unwrap();
    let before_rollback = without_schemas(fx.checksums(None).await);
    let out = fx.cmd(&["rollback", "--run", &load_run, "--apply"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rollback: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rollback_run = rollback["run_id"].as_str().unwrap().to_string();
    let row = fx
        .client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM public.unified_profiles WHERE id = '{DANA}'), \
                        (SELECT count(*) FROM public.enrollments WHERE user_id = '{DANA}'), \
                        (SELECT count(*) FROM public.transactions WHERE user_id = '{DANA}'), \
                        (SELECT progress::text FROM public.enrollments WHERE id = '{EN_ALICE}'), \
                        (SELECT last_name FROM public.unified_profiles WHERE id = '{ALICE}'), \
                        (SELECT count(*) FROM public.unified_profiles WHERE id = '{TESTER}'), \
                        (SELECT count(*) FROM public.unified_profiles WHERE id = '{CAROL}')"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (1, 1, 1),
        "the new customer stays"
    );
    assert_eq!(row.get::<_, String>(3), "80", "progress made since stays");
    assert_eq!(
        row.get::<_, String>(4),
        "Old",
        "the load's change is undone"
    );
    assert_eq!(
        (row.get::<_, i64>(5), row.get::<_, i64>(6)),
        (1, 0),
        "deleted rows come back, inserted rows go"
    );
    assert_ne!(without_schemas(fx.checksums(None).await), before_load);

    // The rollback of the rollback restores the state before it.
    let out = fx.cmd(&["rollback", "--run", &rollback_run, "--apply"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(without_schemas(fx.checksums(None).await), before_rollback);
}

#[tokio::test]
async fn a_row_created_since_that_references_a_row_the_rollback_deletes_is_refused() {
    // Guards: rollback never leaves the app's new rows pointing at nothing.
    let fx = fixture("live_rollback_refs").await;
    fx.approve();
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    let load_run = result["run_id"].as_str().unwrap().to_string();
    // Carol's profile and transaction were inserted by the load; the app adds a second
    // transaction's enrollment for her on another course.
    fx.client
        .batch_execute(&format!(
            "INSERT INTO public.courses (id, title, slug) VALUES ('00000000-0000-4000-8000-00000000c002', 'Canva', 'canva');
             INSERT INTO public.enrollments (id, user_id, course_id, status)
             VALUES ('20000000-0000-4000-8000-000000000009', '{CAROL}', '00000000-0000-4000-8000-00000000c002', 'active');"
        ))
        .await
        .unwrap();
    let live = fx.checksums(None).await;
    let out = fx.cmd(&["rollback", "--run", &load_run, "--apply"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("public.enrollments: 1 rows reference unified_profiles rows"),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, live);
}

#[tokio::test]
async fn a_staged_file_replaced_while_the_load_waits_for_its_lock_is_refused() {
    // Guards: the bytes loaded are the bytes approved, however long the load waited.
    // Another transform run, say, rewrites a staged file meanwhile.
    replaced_during_lock_wait("live_replaced", "transactions.parquet", "profiles.parquet").await;
}

#[tokio::test]
async fn a_reviewed_file_replaced_while_the_load_waits_for_its_lock_is_refused() {
    // Guards: the approval still holds for every file it covers when the load writes, not only
    // for the files the load reads (here the report the reviewer read).
    replaced_during_lock_wait("live_replaced_report", "checks.json", "report.md").await;
}

/// Hold a lock the load needs, replace `stage/<to>` by `stage/<from>` while the load waits for
/// it, and check that the load is refused naming the file, with nothing changed.
async fn replaced_during_lock_wait(name: &str, from: &str, to: &str) {
    let fx = fixture(name).await;
    fx.approve();
    let before = fx.checksums(None).await;
    let holder = crate::support::connect(&fx.url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE public.enrollments IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let child = fx.spawn(&["load", "--apply", "--lock-timeout-ms", "60000"], None);
    let waiting = fx.wait_for_lock_wait().await;
    assert!(waiting, "the load never waited for the lock");
    let stage = fx.artifacts.join("stage");
    std::fs::copy(stage.join(from), stage.join(to)).unwrap();
    holder.batch_execute("ROLLBACK").await.unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("artifact stage/{to} changed after approval")),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, before);
}

#[tokio::test]
async fn a_load_that_committed_is_reported_as_committed_even_when_its_log_connection_fails() {
    // Guards: the log's completion after COMMIT cannot turn a committed load into "nothing
    // committed".
    let fx = fixture("live_log_fails").await;
    fx.approve();
    let out = support_cmd(&fx)
        .args(["load", "--apply"])
        .env("CLEANMIG_TEST_FAULT", "fail-log-after-commit")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "success");
    let run = result["run_id"].as_str().unwrap();
    assert_eq!(log_status(&fx, run).await, "success");
    let status = status_output(&fx);
    let line = status.lines().find(|l| l.contains(run)).unwrap();
    assert!(line.contains("success"), "{status}");
    assert_eq!(
        fx.count(&format!(
            "SELECT count(*) FROM public.unified_profiles WHERE id = '{CAROL}'"
        ))
        .await,
        1
    );
}

fn support_cmd(fx: &Fixture) -> assert_cmd::Command {
    let mut cmd = crate::support::cleanmig(&fx.artifacts);
    cmd.env("DATABASE_URL", &fx.url);
    cmd
}

#[tokio::test]
async fn a_connection_killed_during_commit_says_the_outcome_is_unknown_and_status_tells_the_truth()
{
    // Guards: a broken COMMIT is never reported as "nothing changed" by guesswork.
    let fx = fixture("live_commit_killed").await;
    fx.approve();
    let before = fx.checksums(None).await;
    let child = fx.spawn(&["load", "--apply"], Some("pause-before-commit"));
    // The hook names the session once it waits just before COMMIT; kill it there.
    let killed = fx
        .wait_until(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() \
               AND application_name = 'cleanmig paused before commit') x",
        )
        .await;
    assert!(killed, "the load never reached its COMMIT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("whether the run committed is not known here"),
        "{stderr}"
    );
    assert!(stderr.contains("did not commit"), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "commit_outcome_unknown");
    // It did not commit, and the log and status say so.
    let mut after = fx.checksums(None).await;
    after.remove("schemas");
    let mut expected = before.clone();
    expected.remove("schemas");
    assert_eq!(after, expected);
    let run = result["run_id"].as_str().unwrap();
    assert_eq!(log_status(&fx, run).await, "failed");
    let status = status_output(&fx);
    let line = status.lines().find(|l| l.contains(run)).unwrap();
    assert!(line.contains("failed"), "{status}");
}

#[tokio::test]
async fn a_second_apply_skips_the_comparison_only_while_nothing_the_load_decides_has_changed() {
    // Guards: the shortcut of a re-applied approval never hides what the app wrote since.
    let fx = fixture("live_unchanged").await;
    fx.approve();
    let (ok, first, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    let first_run = first["run_id"].as_str().unwrap().to_string();
    assert!(first["unchanged_since_run"].is_null(), "{first}");

    // Untouched since: a dry run finds nothing to change, and says which run left it so.
    let (ok, dry, stderr) = fx.load(&[]);
    assert!(ok, "{stderr}");
    assert_eq!(dry["unchanged_since_run"], first_run.as_str(), "{dry}");
    assert!(stderr.contains("nothing to change"), "{stderr}");
    for table in ["unified_profiles", "transactions", "enrollments"] {
        let c = &dry["tables"][table];
        assert_eq!(c["unchanged"], first["tables"][table]["staged"], "{dry}");
        assert_eq!(
            (
                c["inserted"].as_u64(),
                c["updated"].as_u64(),
                c["deleted"].as_u64()
            ),
            (Some(0), Some(0), Some(0))
        );
    }
    assert_eq!(dry["validation"]["passed"], true);
    assert_eq!(
        dry["validation"]["staged_rows_in_place_checked_by_run"],
        first_run.as_str()
    );

    // The app writes columns it owns: still nothing to change, and its values stay.
    fx.client
        .batch_execute(&format!(
            "UPDATE public.enrollments SET progress = 40 WHERE id = '{EN_ALICE}'"
        ))
        .await
        .unwrap();
    let before = fx.checksums(None).await;
    let (ok, second, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        second["unchanged_since_run"],
        first_run.as_str(),
        "{second}"
    );
    assert!(second["backup_schema"].is_null(), "{second}");
    assert!(
        stderr.contains("committed, nothing changed (its log row only)"),
        "{stderr}"
    );
    assert_eq!(fx.checksums(None).await, before);
    let second_run = second["run_id"].as_str().unwrap();
    assert_eq!(log_status(&fx, second_run).await, "success");

    // A run that wrote nothing has nothing to roll back, and says so.
    let out = fx.cmd(&["rollback", "--run", second_run, "--apply"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only applied loads that wrote something"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // After a rollback of the first load, the approval is loaded again in full.
    let out = fx.cmd(&["rollback", "--run", &first_run, "--apply"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, third, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    assert!(third["unchanged_since_run"].is_null(), "{third}");
    assert!(
        third["tables"]["transactions"]["inserted"]
            .as_u64()
            .unwrap()
            > 0,
        "{third}"
    );

    // A value the load writes, changed by the app (a refund): compared in full, and refused.
    fx.client
        .batch_execute(&format!(
            "UPDATE public.transactions SET status = 'REFUNDED' WHERE id = '{TX_ALICE}'"
        ))
        .await
        .unwrap();
    let before = fx.checksums(None).await;
    let (ok, refused, stderr) = fx.load(&["--apply"]);
    assert!(!ok, "{refused}");
    assert!(
        stderr.contains(&format!(
            "public.transactions {TX_ALICE}: status 'PAID' -> now 'REFUNDED'"
        )),
        "{stderr}"
    );
    assert_eq!(
        without_schemas(fx.checksums(None).await),
        without_schemas(before)
    );
}
