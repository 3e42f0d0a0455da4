//! Hosted Supabase as it is: the tool runs as the app's non-superuser role, the Data API's
//! roles must see nothing the tool creates, apps put triggers on `auth.users` and name their
//! tables as they please.

use crate::load_fixture::*;

#[tokio::test]
async fn nothing_the_tool_creates_is_readable_by_the_data_apis_roles() {
    // Guards: the operation log and the backups hold customer data; the public anon key must
    // not reach them, even where default privileges grant everything to the API roles.
    let fx = fixture("supabase_private").await;
    fx.client
        .batch_execute(
            "ALTER DEFAULT PRIVILEGES FOR ROLE app_owner GRANT ALL ON TABLES TO anon, authenticated;
             ALTER DEFAULT PRIVILEGES FOR ROLE app_owner GRANT USAGE ON SCHEMAS TO anon, authenticated;
             -- An earlier version's log, in public (where the Data API serves it).
             SET ROLE app_owner;
             CREATE TABLE public.population_operation_log (
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, run_id text NOT NULL,
               operation text NOT NULL, mode text NOT NULL, status text NOT NULL, target_run_id text,
               approval_sha256 text, extract_fingerprint text, approved_by text, backup_schema text,
               counts jsonb, result jsonb, error text,
               started_at timestamptz NOT NULL DEFAULT clock_timestamp(), finished_at timestamptz,
               duration_ms bigint, db_user text NOT NULL DEFAULT current_user, os_user text, tool_version text);
             INSERT INTO public.population_operation_log (run_id, operation, mode, status)
               VALUES ('20250101T000000Z-old000', 'load', 'dry_run', 'dry_run_completed');
             RESET ROLE;",
        )
        .await
        .unwrap();
    fx.approve();
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("moved 1 rows of public.population_operation_log"),
        "{stderr}"
    );
    let run = result["run_id"].as_str().unwrap().to_string();
    let out = fx.cmd(&["rollback", "--run", &run, "--apply"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        fx.count("SELECT count(*) FROM cleanmig.population_operation_log WHERE run_id = '20250101T000000Z-old000'")
            .await,
        1
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.population_operation_log')")
            .await,
        0
    );
    // Every schema and table the tool created: the log's and two backups.
    let schemas = fx
        .count("SELECT count(*) FROM pg_namespace WHERE nspname = 'cleanmig' OR nspname LIKE 'cleanmig_backup_%'")
        .await;
    assert_eq!(schemas, 3);
    let tables = fx
        .count(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE (n.nspname = 'cleanmig' OR n.nspname LIKE 'cleanmig_backup_%') AND c.relkind = 'r'",
        )
        .await;
    assert!(tables > 10, "{tables}");
    for role in ["anon", "authenticated"] {
        let readable = fx
            .count(&format!(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE (n.nspname = 'cleanmig' OR n.nspname LIKE 'cleanmig_backup_%') AND c.relkind IN ('r', 'S') \
                   AND (has_table_privilege('{role}', c.oid, 'SELECT') OR has_table_privilege('{role}', c.oid, 'INSERT'))"
            ))
            .await;
        assert_eq!(readable, 0, "{role} can read a table of the tool's");
        let usage = fx
            .count(&format!(
                "SELECT count(*) FROM pg_namespace WHERE (nspname = 'cleanmig' OR nspname LIKE 'cleanmig_backup_%') \
                 AND has_schema_privilege('{role}', oid, 'USAGE')"
            ))
            .await;
        assert_eq!(usage, 0, "{role} has USAGE on a schema of the tool's");
    }
    let without_rls = fx
        .count(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE (n.nspname = 'cleanmig' OR n.nspname LIKE 'cleanmig_backup_%') AND c.relkind = 'r' \
               AND NOT c.relrowsecurity",
        )
        .await;
    assert_eq!(without_rls, 0);
    // The logged error text carries no row values: a refused run logs its first line only.
    fx.client
        .batch_execute(&format!(
            "UPDATE public.unified_profiles SET email = 'bob.reyes@example.com' WHERE id = '{BOB}'"
        ))
        .await
        .unwrap();
    let (ok, _, stderr) = fx.load(&["--apply"]);
    assert!(!ok);
    assert!(stderr.contains("b***@example.com"), "{stderr}");
    let logged = fx
        .client
        .query_one(
            "SELECT error || ' ' || result::text FROM cleanmig.population_operation_log ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    assert!(!logged.contains("@example.com"), "{logged}");
    assert!(logged.contains("changed since extraction"), "{logged}");
}

#[tokio::test]
async fn a_sign_up_trigger_on_auth_users_still_gives_exactly_the_staged_rows() {
    // Guards: apps create a profile from a trigger on auth.users; the load creates logins, so
    // the trigger fires inside the load and must not leave anything but the staged rows.
    let fx = fixture("supabase_trigger").await;
    fx.client
        .batch_execute(
            "SET ROLE app_owner;
             CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
             SET search_path = '' AS $$
             BEGIN
               INSERT INTO public.unified_profiles (id, email, first_name)
               VALUES (new.id, new.email, new.raw_user_meta_data ->> 'first_name');
               RETURN new;
             END $$;
             CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
               FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
             RESET ROLE;",
        )
        .await
        .unwrap();
    fx.approve();
    let (ok, result, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    // The role may set session_replication_role, as on hosted Supabase: the inserts of the
    // tables without triggers of their own check their keys per statement.
    assert!(
        stderr.contains("inserts check their foreign keys once per statement"),
        "{stderr}"
    );
    assert_eq!(result["auth_users_created"], 1);
    // The row the trigger made is a new row: it counts as inserted and takes every staged value.
    assert_eq!(
        result["tables"]["unified_profiles"]["inserted"], 1,
        "{result}"
    );
    // The table holds exactly the staged profiles.
    let staged = crate::support::parquet_as_text(&fx.artifacts.join("stage/profiles.parquet"));
    let rows = fx
        .count("SELECT count(*) FROM public.unified_profiles")
        .await;
    assert_eq!(rows, 3, "{staged}");
    let carol = fx
        .client
        .query_one(
            &format!(
                "SELECT first_name, last_name, systemeio_id, updated_at::text FROM public.unified_profiles WHERE id = '{CAROL}'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            carol.get::<_, String>(0),
            carol.get::<_, String>(1),
            carol.get::<_, String>(2),
            carol.get::<_, String>(3)
        ),
        (
            "Carol".into(),
            "Cruz".into(),
            "sys-4".into(),
            "2024-04-02 03:04:05+00".into()
        )
    );
    // And a second apply changes nothing.
    let (ok, again, stderr) = fx.load(&["--apply"]);
    assert!(ok, "{stderr}");
    for t in ["unified_profiles", "transactions", "enrollments"] {
        assert_eq!(again["tables"][t]["inserted"], 0, "{again}");
        assert_eq!(again["tables"][t]["updated"], 0, "{again}");
        assert_eq!(again["tables"][t]["deleted"], 0, "{again}");
    }
}

/// A table name with a quote, a double quote, a space, a semicolon, a dot and mixed case.
const ODD: &str = "O'Brien \"Notes\"; v1.2";
/// A table name of 63 bytes, Postgres' limit.
const LONG: &str = "a_table_name_that_is_exactly_sixty_three_bytes_long_for_a_test";

async fn hostile_tables(fx: &Fixture) {
    let odd = support_ident(ODD);
    let long = support_ident(LONG);
    fx.client
        .batch_execute(&format!(
            "SET ROLE app_owner;
             CREATE TABLE public.{odd} (
               \"Id\" bigint PRIMARY KEY, \"User Id\" uuid REFERENCES public.unified_profiles (id),
               \"it's; \"\"quoted\"\".col\" text);
             CREATE TABLE public.{long} (
               id bigint PRIMARY KEY, profile_id uuid REFERENCES public.unified_profiles (id));
             INSERT INTO public.{odd} VALUES (1, '{TESTER}', 'x''y'), (2, '{ALICE}', 'kept');
             INSERT INTO public.{long} VALUES (7, '{TESTER}');
             RESET ROLE;"
        ))
        .await
        .unwrap();
}

fn support_ident(name: &str) -> String {
    cleanmig::sql::ident(name)
}

#[tokio::test]
async fn tables_with_any_name_extract_load_and_roll_back() {
    // Guards: names reach SQL text and file names only through one quoting function and one
    // file-name encoding.
    for policy in ["delete", "keep"] {
        let fx = fixture(&format!("supabase_names_{policy}")).await;
        hostile_tables(&fx).await;
        let before = fx.checksums(None).await;
        // Extract again, now that the app's tables exist.
        let out = fx.cmd(&["extract"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let extract = fx.artifacts.join("extract");
        let names: Vec<String> = std::fs::read_dir(&extract)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.contains(&format!("{}.parquet", cleanmig::catalog::file_stem(ODD))),
            "{names:?}"
        );
        assert!(
            names.contains(&format!("{}.parquet", cleanmig::catalog::file_stem(LONG))),
            "{names:?}"
        );
        // Nothing was written outside the artifacts directory's own folders.
        for entry in std::fs::read_dir(fx.artifacts.parent().unwrap()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(name == "artifacts", "written outside artifacts/: {name}");
        }
        fx.restage();
        fx.approve();
        let (ok, result, stderr) = fx.load(&["--apply", "--dependents", policy]);
        assert!(ok, "{policy}: {stderr}");
        let odd_rows = fx
            .count(&format!(
                "SELECT count(*) FROM public.{}",
                support_ident(ODD)
            ))
            .await;
        let tester = fx
            .count(&format!(
                "SELECT count(*) FROM public.unified_profiles WHERE id = '{TESTER}'"
            ))
            .await;
        match policy {
            "delete" => {
                assert_eq!((odd_rows, tester), (1, 0), "{result}");
                let deleted = &result["dependents"]["deleted"];
                assert_eq!(deleted.as_array().unwrap().len(), 2, "{result}");
            }
            _ => assert_eq!((odd_rows, tester), (2, 1), "{result}"),
        }
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
            "{policy}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut after = fx.checksums(None).await;
        let mut expected = before;
        after.remove("schemas");
        expected.remove("schemas");
        // The load added the six transactions columns; compare the rest.
        after.retain(|k, _| !k.contains("transactions"));
        expected.retain(|k, _| !k.contains("transactions"));
        assert_eq!(after, expected, "{policy}");
    }
}
