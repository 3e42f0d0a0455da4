//! The catalogue is the one place that knows the destination tables: a new destination table
//! and a new column need `pipeline/destinations.csv`, `pipeline/added_columns.csv` and the
//! pipeline SQL, and no change to the tool.

use crate::support;
use crate::transform::copy_dir;
use std::path::Path;
use std::process::Output;

fn append(path: &Path, line: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(line);
    std::fs::write(path, text).unwrap();
}

fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_new_destination_table_and_column_need_only_the_catalogue_and_the_pipeline_sql() {
    // Guards: every list of tables in extract, transform, diff, load, drift and rollback is
    // derived from the catalogue.
    let url = support::fresh_database("catalog").await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let run = |args: &[&str]| {
        support::cleanmig(&artifacts)
            .env("CLEANMIG_PIPELINE", dir.path().join("pipeline"))
            .env("DATABASE_URL", &url)
            .args(args)
            .output()
            .unwrap()
    };
    let truth = dir.path().join("ground_truth.json");
    ok(
        support::cleanmig(&artifacts)
            .env("DATABASE_URL", &url)
            .args(["demo-data", "--scale", "0.05", "--ground-truth"])
            .arg(&truth)
            .output()
            .unwrap(),
        "demo-data",
    );
    let client = support::connect(&url).await;
    // The app's own migration: a table that references profiles and enrollments.
    client
        .batch_execute(
            "CREATE TABLE public.certificates (
               id uuid PRIMARY KEY,
               user_id uuid NOT NULL REFERENCES public.unified_profiles (id),
               enrollment_id uuid NOT NULL REFERENCES public.enrollments (id),
               issued_at timestamptz)",
        )
        .await
        .unwrap();

    // The pipeline, extended by configuration and SQL alone.
    let pipeline = dir.path().join("pipeline");
    copy_dir(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline")),
        &pipeline,
    );
    append(
        &pipeline.join("destinations.csv"),
        "public.certificates,certificates,reconcile,id,id,\n",
    );
    append(
        &pipeline.join("added_columns.csv"),
        "public.transactions,coupon_code,text,'none'\npublic.certificates,issued_by,text,\n",
    );
    let transactions = pipeline.join("transform/09_transactions.sql");
    let sql = std::fs::read_to_string(&transactions).unwrap();
    assert!(sql.contains("'xendit' AS api_source,"));
    std::fs::write(
        &transactions,
        sql.replace(
            "'xendit' AS api_source,",
            "'xendit' AS api_source, CAST(NULL AS VARCHAR) AS coupon_code,",
        ),
    )
    .unwrap();
    std::fs::write(
        pipeline.join("transform/12_certificates.sql"),
        "-- certificates: one per staged enrollment.\n\
         SELECT uuid_v5('certificate:' || CAST(e.id AS VARCHAR)) AS id, e.user_id, e.id AS enrollment_id,\n\
                e.created_at AS issued_at, 'cleanmig' AS issued_by\n\
         FROM enrollments AS e\n",
    )
    .unwrap();

    ok(run(&["extract"]), "extract");
    ok(run(&["transform"]), "transform");
    let staged = ok(
        run(&[
            "query",
            "--format",
            "csv",
            "SELECT (SELECT count(*) FROM stage_certificates) AS c, (SELECT count(*) FROM stage_enrollments) AS e, \
             (SELECT count(*) FROM diff_certificates_insert) AS i",
        ]),
        "query",
    );
    let staged: Vec<&str> = staged.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(staged[0], staged[1], "one certificate per enrollment");
    assert_eq!(staged[0], staged[2], "every certificate is new");
    ok(run(&["approve", "--by", "tester"]), "approve");
    let first = ok(run(&["load", "--apply", "--dependents", "delete"]), "load");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let certificates: i64 = staged[0].parse().unwrap();
    assert_eq!(
        first["tables"]["certificates"]["inserted"], certificates,
        "{first}"
    );
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM public.certificates WHERE issued_by = 'cleanmig'), \
                    (SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.transactions'::regclass \
                       AND attname = 'coupon_code' AND NOT attisdropped)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (certificates, 1)
    );

    // A second apply changes nothing; rollback takes the new table back to its state before.
    let second = ok(
        run(&["load", "--apply", "--dependents", "delete"]),
        "second load",
    );
    let second: serde_json::Value = serde_json::from_str(&second).unwrap();
    for table in [
        "certificates",
        "enrollments",
        "transactions",
        "unified_profiles",
    ] {
        let c = &second["tables"][table];
        assert_eq!(
            (&c["inserted"], &c["updated"], &c["deleted"]),
            (&0.into(), &0.into(), &0.into()),
            "{table}: {c}"
        );
    }
    let run_id = first["run_id"].as_str().unwrap();
    ok(run(&["rollback", "--run", run_id, "--apply"]), "rollback");
    let left: i64 = client
        .query_one("SELECT count(*) FROM public.certificates", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_destination_table_under_another_name_is_loaded_and_validated_under_that_name() {
    // Guards: the load's checks and figures read the tables the catalogue names (through
    // pipeline/load/), not the demo schema's names; a table left under the old name is not
    // taken for the destination.
    let url = support::fresh_database("catalog_renamed").await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let pipeline = dir.path().join("pipeline");
    let run = |args: &[&str]| {
        support::cleanmig(&artifacts)
            .env("CLEANMIG_PIPELINE", &pipeline)
            .env("DATABASE_URL", &url)
            .args(args)
            .output()
            .unwrap()
    };
    ok(run(&["demo-data", "--scale", "0.05"]), "demo-data");
    let client = support::connect(&url).await;
    // The app calls its profiles `members`; an empty table keeps the old name.
    client
        .batch_execute(
            "ALTER TABLE public.unified_profiles RENAME TO members;
             CREATE TABLE public.unified_profiles (id uuid PRIMARY KEY, email text, first_name text,
               last_name text);",
        )
        .await
        .unwrap();
    copy_dir(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline")),
        &pipeline,
    );
    for path in files_under(&pipeline) {
        let text = std::fs::read_to_string(&path).unwrap();
        let renamed = text
            .replace("public.unified_profiles", "public.members")
            .replace("extract_unified_profiles", "extract_members");
        std::fs::write(&path, renamed).unwrap();
    }

    ok(run(&["extract"]), "extract");
    ok(run(&["transform"]), "transform");
    ok(run(&["approve", "--by", "tester"]), "approve");
    let result = ok(run(&["load", "--apply", "--dependents", "delete"]), "load");
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    let counts = client
        .query_one(
            "SELECT (SELECT count(*) FROM public.members),
                    (SELECT count(*) FROM public.members WHERE email IS NULL),
                    (SELECT count(*) FROM public.unified_profiles)",
            &[],
        )
        .await
        .unwrap();
    let (members, without_email, old_name) = (
        counts.get::<_, i64>(0),
        counts.get::<_, i64>(1),
        counts.get::<_, i64>(2),
    );
    assert!(members > 0);
    assert_eq!(old_name, 0, "the table under the old name was written");
    let figures = &result["validation"]["figures"]["profiles"];
    assert_eq!(
        (&figures["profile_count"], &figures["missing_email"]),
        (&members.into(), &without_email.into()),
        "{result}"
    );
    let checks: Vec<&str> = result["validation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        checks.contains(&"every enrollment user has a profile"),
        "{checks:?}"
    );
    let tables = result["tables"].as_object().unwrap();
    assert!(
        tables.contains_key("members") && !tables.contains_key("unified_profiles"),
        "{result}"
    );
}
