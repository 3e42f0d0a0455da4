//! Transform: the business rules of `pipeline/` on tiny fixture tables (snapshots of the
//! staged artifacts), byte-identical re-runs, and a planted blocking failure.

use arrow::array::{Array, ArrayRef, ListBuilder, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use cleanmig::artifacts::{Manifest, ParquetArtifact};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rules");
const PIPELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline");

/// Column types of the extracted destination tables (as `tests/fixtures/schema/supabase.sql`
/// declares them), in Postgres terms.
fn destination_columns(table: &str) -> Vec<(&'static str, &'static str)> {
    match table {
        "auth_users" => vec![
            ("instance_id", "uuid"),
            ("id", "uuid"),
            ("aud", "varchar"),
            ("role", "varchar"),
            ("email", "varchar"),
            ("encrypted_password", "varchar"),
            ("email_confirmed_at", "timestamptz"),
            ("invited_at", "timestamptz"),
            ("confirmation_token", "varchar"),
            ("confirmation_sent_at", "timestamptz"),
            ("recovery_token", "varchar"),
            ("recovery_sent_at", "timestamptz"),
            ("email_change_token_new", "varchar"),
            ("email_change", "varchar"),
            ("email_change_sent_at", "timestamptz"),
            ("last_sign_in_at", "timestamptz"),
            ("raw_app_meta_data", "jsonb"),
            ("raw_user_meta_data", "jsonb"),
            ("is_super_admin", "bool"),
            ("created_at", "timestamptz"),
            ("updated_at", "timestamptz"),
            ("phone", "text"),
            ("phone_confirmed_at", "timestamptz"),
            ("phone_change", "text"),
            ("phone_change_token", "varchar"),
            ("phone_change_sent_at", "timestamptz"),
            ("confirmed_at", "timestamptz"),
            ("email_change_token_current", "varchar"),
            ("email_change_confirm_status", "int2"),
            ("banned_until", "timestamptz"),
            ("reauthentication_token", "varchar"),
            ("reauthentication_sent_at", "timestamptz"),
            ("is_sso_user", "bool"),
            ("deleted_at", "timestamptz"),
            ("is_anonymous", "bool"),
        ],
        "auth_identities" => vec![
            ("provider_id", "text"),
            ("user_id", "uuid"),
            ("identity_data", "jsonb"),
            ("provider", "text"),
            ("last_sign_in_at", "timestamptz"),
            ("created_at", "timestamptz"),
            ("updated_at", "timestamptz"),
            ("email", "text"),
            ("id", "uuid"),
        ],
        "courses" => vec![
            ("id", "uuid"),
            ("title", "text"),
            ("slug", "text"),
            ("description", "text"),
            ("status", "text"),
            ("created_at", "timestamptz"),
            ("updated_at", "timestamptz"),
        ],
        "unified_profiles" => vec![
            ("id", "uuid"),
            ("email", "text"),
            ("first_name", "text"),
            ("last_name", "text"),
            ("phone", "text"),
            ("tags", "text[]"),
            ("acquisition_source", "text"),
            ("payment_source", "text"),
            ("cohort_date", "date"),
            ("systemeio_id", "text"),
            ("systemeio_tags", "text"),
            ("created_at", "timestamptz"),
            ("updated_at", "timestamptz"),
            ("last_active_at", "timestamptz"),
            ("tier", "text"),
            ("tier_assignment", "text"),
            ("tier_assignment_notes", "text"),
            ("api_source", "text"),
            ("last_api_sync_at", "timestamptz"),
            ("api_sync_version", "int4"),
        ],
        "transactions" => vec![
            ("id", "uuid"),
            ("user_id", "uuid"),
            ("amount", "numeric"),
            ("currency", "text"),
            ("status", "text"),
            ("payment_method", "text"),
            ("payment_provider", "text"),
            ("payment_provider_id", "text"),
            ("payment_provider_fee", "numeric"),
            ("description", "text"),
            ("product_name", "text"),
            ("product_type", "text"),
            ("product_id", "uuid"),
            ("created_at", "timestamptz"),
            ("updated_at", "timestamptz"),
            ("paid_at", "timestamptz"),
            ("settled_at", "timestamptz"),
            ("cancelled_at", "timestamptz"),
            ("refunded_at", "timestamptz"),
            ("failed_at", "timestamptz"),
            ("failure_reason", "text"),
            ("metadata", "jsonb"),
        ],
        "enrollments" => vec![
            ("id", "uuid"),
            ("user_id", "uuid"),
            ("course_id", "uuid"),
            ("transaction_id", "uuid"),
            ("status", "text"),
            ("created_at", "timestamptz"),
            ("updated_at", "timestamptz"),
            ("start_date", "date"),
            ("expiry_date", "date"),
            ("completion_date", "date"),
            ("progress", "numeric"),
            ("last_activity_at", "timestamptz"),
            ("notes", "text"),
            ("metadata", "jsonb"),
            ("cohort_month", "text"),
            ("cohort_quarter", "text"),
        ],
        other => panic!("no column list for {other}"),
    }
}

fn arrow_type(pg: &str) -> DataType {
    match pg {
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "date" => DataType::Date32,
        "bool" => DataType::Boolean,
        "int2" => DataType::Int16,
        "int4" => DataType::Int32,
        "int8" => DataType::Int64,
        "numeric" => DataType::Decimal128(38, 2),
        "text[]" => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        _ => DataType::Utf8,
    }
}

fn field(name: &str, pg: &str) -> Field {
    let meta = HashMap::from([("cleanmig.pg_type".to_string(), pg.to_string())]);
    Field::new(
        name,
        arrow_type(pg),
        !matches!(name, "id" | "is_sso_user" | "is_anonymous"),
    )
    .with_metadata(meta)
}

/// Source columns in the canonical order of `pipeline/source_columns.csv`.
fn source_columns(table: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("{PIPELINE}/source_columns.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut parts = l.split(',');
            (parts.next() == Some(table)).then(|| parts.next().unwrap().to_string())
        })
        .collect()
}

/// Read a fixture CSV into a batch of `schema`: missing columns are NULL, empty cells are
/// NULL, `''` is the empty string, `a|b` in a text[] column is a list.
fn read_fixture(csv: &Path, schema: &SchemaRef) -> RecordBatch {
    let text = std::fs::read_to_string(csv).unwrap();
    let header: Vec<String> = text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(|s| s.to_string())
        .collect();
    let read_schema = Arc::new(Schema::new(
        header
            .iter()
            .map(|h| {
                let ty = match schema.field_with_name(h).unwrap().data_type() {
                    DataType::List(_) => DataType::Utf8,
                    other => other.clone(),
                };
                Field::new(h, ty, true)
            })
            .collect::<Vec<_>>(),
    ));
    let mut reader = arrow::csv::ReaderBuilder::new(read_schema.clone())
        .with_header(true)
        .build(std::io::Cursor::new(text.clone()))
        .unwrap();
    let read = reader
        .next()
        .map(|b| b.unwrap())
        .unwrap_or_else(|| RecordBatch::new_empty(read_schema.clone()));
    let rows = read.num_rows();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            let Ok(idx) = read_schema.index_of(f.name()) else {
                return arrow::array::new_null_array(f.data_type(), rows);
            };
            let col = read.column(idx).clone();
            match f.data_type() {
                DataType::Utf8 => {
                    let s = col.as_any().downcast_ref::<StringArray>().unwrap();
                    let out: StringArray = s
                        .iter()
                        .map(|v| v.map(|v| if v == "''" { "" } else { v }))
                        .collect();
                    Arc::new(out) as ArrayRef
                }
                DataType::List(_) => {
                    let s = col.as_any().downcast_ref::<StringArray>().unwrap();
                    let mut b = ListBuilder::new(StringBuilder::new());
                    for v in s.iter() {
                        match v {
                            None => b.append_null(),
                            Some(v) => {
                                for item in v.split('|') {
                                    b.values().append_value(item);
                                }
                                b.append(true);
                            }
                        }
                    }
                    Arc::new(b.finish()) as ArrayRef
                }
                _ => col,
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let mut w = ParquetArtifact::create(path, batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

/// Write an extract of the fixture tables in `fixtures` into `artifacts/extract`.
pub fn write_extract(fixtures: &Path, artifacts: &Path) {
    let dir = artifacts.join("extract");
    for source in ["xendit", "systemeio"] {
        let mut fields = vec![Field::new("_source_row", DataType::Int64, false)];
        fields.extend(
            source_columns(source)
                .iter()
                .map(|c| Field::new(c, DataType::Utf8, true)),
        );
        let schema = Arc::new(Schema::new(fields));
        let batch = read_fixture(&fixtures.join(format!("{source}.csv")), &schema);
        write_parquet(&dir.join(format!("{source}.parquet")), &batch);
    }
    for table in [
        "auth_users",
        "auth_identities",
        "courses",
        "unified_profiles",
        "transactions",
        "enrollments",
    ] {
        let schema = Arc::new(Schema::new(
            destination_columns(table)
                .into_iter()
                .map(|(n, t)| field(n, t))
                .collect::<Vec<_>>(),
        ));
        let csv = fixtures.join(format!("{table}.csv"));
        let batch = if csv.exists() {
            read_fixture(&csv, &schema)
        } else {
            RecordBatch::new_empty(schema)
        };
        write_parquet(&dir.join(format!("{table}.parquet")), &batch);
    }
    Manifest {
        stage: "extract".into(),
        tool_version: "fixture".into(),
        extracted_at: "2024-06-01T00:00:00Z".into(),
        source: None,
        fingerprint: "fixture-fingerprint".into(),
        tables: BTreeMap::new(),
        artifacts: BTreeMap::new(),
        catalog: Some(cleanmig::catalog::Catalog::read(Path::new(PIPELINE)).unwrap()),
        load_validation: None,
    }
    .write(&dir)
    .unwrap();
}

pub(crate) fn fixture_artifacts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_extract(Path::new(FIXTURES), dir.path());
    dir
}

async fn query(artifacts: &Path, sql: &str) -> String {
    let ctx = cleanmig::query::session(artifacts, Path::new(PIPELINE))
        .await
        .unwrap();
    let batches = cleanmig::query::execute(&ctx, sql).await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

pub(crate) async fn transformed() -> tempfile::TempDir {
    let dir = fixture_artifacts();
    let outcome = cleanmig::transform::transform(dir.path(), Path::new(PIPELINE))
        .await
        .unwrap();
    let failed: Vec<_> = outcome
        .checks
        .iter()
        .filter(|c| !c.passed && c.severity == "blocking")
        .map(|c| format!("{}: {}", c.name, c.sample_table))
        .collect();
    assert!(
        failed.is_empty(),
        "blocking checks failed on the fixtures: {failed:#?}"
    );
    dir
}

#[tokio::test]
async fn rules_on_fixture_tables() {
    let dir = transformed().await;
    let a = dir.path();
    // Profiles: customers by email (tagged, paying, or both), existing ids and app-owned
    // columns kept, keep-list (admin tier, keep_emails.csv) kept, test account left out.
    insta::assert_snapshot!(
        "profiles",
        query(a, "SELECT id, email, first_name, last_name, phone, tags, acquisition_source, payment_source, cohort_date, systemeio_id, systemeio_tags, created_at, tier, tier_assignment, api_source FROM stage_profiles ORDER BY email").await
    );
    // Auth users: only new logins, written like Supabase writes them.
    insta::assert_snapshot!(
        "auth_users",
        query(a, "SELECT * FROM stage_auth_users ORDER BY email").await
    );
    insta::assert_snapshot!(
        "auth_identities",
        query(
            a,
            "SELECT * FROM stage_auth_identities ORDER BY provider_id"
        )
        .await
    );
    // Transactions: paid P2P and Canva, duplicates once (SETTLED kept), existing id kept,
    // amounts parsed, timestamps in the row's zone, fiscal year/quarter.
    insta::assert_snapshot!(
        "transactions",
        query(a, "SELECT id, user_id, amount, currency, status, payment_provider_id, payment_provider_fee, product_type, created_at, paid_at, settled_at, metadata, fiscal_year, fiscal_quarter FROM stage_transactions ORDER BY payment_provider_id").await
    );
    // Enrollments: payer and tag-only students; existing id, progress and notes kept.
    insta::assert_snapshot!(
        "enrollments",
        query(a, "SELECT e.id, p.email, e.transaction_id, e.status, e.start_date, e.progress, e.last_activity_at, e.notes, e.metadata, e.cohort_month, e.cohort_quarter FROM stage_enrollments e JOIN stage_profiles p ON p.id = e.user_id ORDER BY p.email").await
    );
    // Every source row not kept, with its reason.
    insta::assert_snapshot!(
        "rejects",
        query(a, "SELECT source_table, _source_row, source_key, outcome, reason FROM rejects ORDER BY source_table, _source_row").await
    );
    // Deletes: the test account's rows.
    insta::assert_snapshot!(
        "deletes",
        query(a, "SELECT 'profiles' AS t, id, email AS key FROM diff_profiles_delete UNION ALL SELECT 'transactions', id, payment_provider_id FROM diff_transactions_delete UNION ALL SELECT 'enrollments', id, user_id FROM diff_enrollments_delete ORDER BY t, id").await
    );
    insta::assert_snapshot!(
        "updates",
        query(a, "SELECT 'profiles' AS t, id, changed_columns FROM diff_profiles_update UNION ALL SELECT 'enrollments', id, changed_columns FROM diff_enrollments_update ORDER BY t, id").await
    );
    let report = std::fs::read_to_string(a.join("stage/report.md")).unwrap();
    let reconciliation = report
        .split("## Reconciliation")
        .nth(1)
        .unwrap()
        .split("## Checks")
        .next()
        .unwrap();
    insta::assert_snapshot!("reconciliation", reconciliation);
}

#[tokio::test]
async fn the_contact_kept_per_email_is_the_latest_updated_then_the_first_row() {
    // Pins 04_contacts.sql's choice among rows of one email: the latest of updated_at (else
    // created_at), a row with no time only when none has one, then the lowest _source_row.
    let fixtures = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, fixtures.path().join(path.file_name().unwrap())).unwrap();
    }
    let contacts = fixtures.path().join("systemeio.csv");
    let mut csv = std::fs::read_to_string(&contacts).unwrap();
    csv.push_str(concat!(
        // a time beats no time, whichever row comes first
        "9,s-9,kim@example.com,Kim,Go,,PaidP2P,2024-01-01 09:00:00,\n",
        "10,s-10,kim@example.com,Kim,Go,,PaidP2P,,\n",
        "11,s-11,lee@example.com,Lee,Ong,,PaidP2P,,\n",
        "12,s-12,lee@example.com,Lee,Ong,,PaidP2P,2024-01-01 09:00:00,\n",
        // the same time: the first row
        "13,s-13,mae@example.com,Mae,Uy,,PaidP2P,2024-01-01 09:00:00,2024-05-01 09:00:00\n",
        "14,s-14,mae@example.com,Mae,Uy,,PaidP2P,2024-02-01 09:00:00,2024-05-01 09:00:00\n",
        // no time at all: the first row
        "15,s-15,ned@example.com,Ned,Sy,,PaidP2P,,\n",
        "16,s-16,ned@example.com,Ned,Sy,,PaidP2P,,\n",
        // updated_at counts before created_at
        "17,s-17,oli@example.com,Oli,Ty,,PaidP2P,2024-06-01 09:00:00,2024-01-01 09:00:00\n",
        "18,s-18,oli@example.com,Oli,Ty,,PaidP2P,2024-03-01 09:00:00,\n",
    ));
    std::fs::write(&contacts, csv).unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    write_extract(fixtures.path(), artifacts.path());
    cleanmig::transform::transform(artifacts.path(), Path::new(PIPELINE))
        .await
        .unwrap();
    let merged = column_strings(
        artifacts.path(),
        "SELECT _source_row, reason FROM rejects \
         WHERE source_table = 'systemeio' AND _source_row >= 9 ORDER BY _source_row",
    )
    .await;
    let merged: Vec<(String, String)> = merged
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    let expected = [
        ("10", "same email as row 9"),
        ("11", "same email as row 12"),
        ("14", "same email as row 13"),
        ("16", "same email as row 15"),
        ("17", "same email as row 18"),
    ];
    assert_eq!(
        merged,
        expected.map(|(row, reason)| (row.to_string(), reason.to_string()))
    );
}

#[tokio::test]
async fn staged_tables_have_the_destination_columns_and_types() {
    let dir = transformed().await;
    let stage = dir.path().join("stage");
    let extract = dir.path().join("extract");
    let catalog = cleanmig::catalog::Catalog::read(Path::new(PIPELINE)).unwrap();
    for dest in catalog.staged() {
        let (stage_name, table) = (dest.stage_artifact(), &dest.extract_artifact());
        let staged = cleanmig::transform::engine::parquet_schema(
            &stage.join(format!("{stage_name}.parquet")),
        )
        .unwrap();
        let target =
            cleanmig::transform::engine::parquet_schema(&extract.join(format!("{table}.parquet")))
                .unwrap();
        let target = cleanmig::transform::with_added_columns(&target, &dest.added_columns).unwrap();
        let expected: Vec<(String, DataType)> = target
            .fields()
            .iter()
            .filter(|f| !(*table == "auth_users" && f.name() == "confirmed_at"))
            .filter(|f| !(*table == "auth_identities" && f.name() == "email"))
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let got: Vec<(String, DataType)> = staged
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        assert_eq!(got, expected, "{stage_name}");
    }
    let manifest = Manifest::read(&stage).unwrap();
    assert_eq!(manifest.stage, "transform");
    assert_eq!(manifest.fingerprint, "fixture-fingerprint");
    assert_eq!(manifest.extracted_at, "2024-06-01T00:00:00Z");
    for name in [
        "profiles",
        "rejects",
        "diff/profiles_delete",
        "checks",
        "report",
    ] {
        assert!(
            manifest.artifacts.contains_key(name),
            "manifest lists {name}"
        );
    }
}

fn file_hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    cleanmig::artifacts::sha256_file(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn transform_twice_gives_byte_identical_files() {
    // Once in this process, once by the binary: no wall clock, random id or hash-map order
    // may leak into the files.
    let dir = transformed().await;
    let first = file_hashes(&dir.path().join("stage"));
    let out = crate::support::cleanmig(dir.path())
        .arg("transform")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = file_hashes(&dir.path().join("stage"));
    assert!(first.len() > 15, "{first:?}");
    assert_eq!(first, second);
}

/// A copy of `pipeline/` in `dir` with one more check, `checks/<name>`; returns its path.
fn pipeline_with_check(dir: &Path, name: &str, sql: &str) -> std::path::PathBuf {
    let pipeline = dir.join("pipeline");
    copy_dir(Path::new(PIPELINE), &pipeline);
    std::fs::write(pipeline.join("checks").join(name), sql).unwrap();
    pipeline
}

/// What a transform leaves in the artifacts directory when it ends: its scratch directory and
/// the previous stage set aside (nothing, once it has ended).
fn transform_leftovers(artifacts: &Path) -> Vec<String> {
    std::fs::read_dir(artifacts)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".transform.tmp-") || n.starts_with(".stage.previous-"))
        .collect()
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn planted_blocking_failure_stops_transform_and_shows_rows() {
    // Guards: a failing blocking check must make `cleanmig transform` exit non-zero and
    // show the failing rows (here: every profile of the fixture).
    let dir = fixture_artifacts();
    let pipeline = pipeline_with_check(
        dir.path(),
        "planted_failure.sql",
        "-- A planted failure: no profile may exist.\n-- severity: blocking\nSELECT id, email FROM profiles\n",
    );
    let out = crate::support::cleanmig(dir.path())
        .env("CLEANMIG_PIPELINE", &pipeline)
        .arg("transform")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "transform must fail: {stderr}");
    assert!(stderr.contains("planted_failure"), "{stderr}");
    assert!(
        stderr.contains("gina@example.com"),
        "failing rows shown: {stderr}"
    );
    let report = std::fs::read_to_string(dir.path().join("stage/report.md")).unwrap();
    assert!(report.contains("`planted_failure`"));
    assert!(report.contains("gina@example.com"));
    let checks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("stage/checks.json")).unwrap())
            .unwrap();
    let planted = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "planted_failure")
        .unwrap();
    assert_eq!(planted["passed"], false);
    assert_eq!(planted["severity"], "blocking");
}

/// Transform the fixture extract with one rule file replaced by `sql`: (succeeded, stderr).
fn transform_with_rule(file: &str, sql: &str) -> (bool, String) {
    let dir = fixture_artifacts();
    let pipeline = dir.path().join("pipeline");
    copy_dir(Path::new(PIPELINE), &pipeline);
    std::fs::write(pipeline.join("transform").join(file), sql).unwrap();
    let out = crate::support::cleanmig(dir.path())
        .env("CLEANMIG_PIPELINE", &pipeline)
        .arg("transform")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_broken_statement_names_its_file() {
    let (ok, stderr) = transform_with_rule(
        "03_payments.sql",
        "SELECT no_such_column FROM extract_xendit\n",
    );
    assert!(!ok);
    assert!(stderr.contains("03_payments.sql"), "{stderr}");
}

#[test]
fn a_statement_that_fails_only_as_its_output_is_written_names_its_file() {
    // Guards the rules kept as plans (no later file reads `rejects`): their errors come while
    // the output is written, and still name the SQL file.
    let (ok, stderr) = transform_with_rule(
        "11_rejects.sql",
        "SELECT CAST(email AS INT) AS n FROM payments\n",
    );
    assert!(!ok);
    assert!(stderr.contains("11_rejects.sql"), "{stderr}");
    assert!(stderr.contains("Int32"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// End to end against a real Postgres: sources in both shapes -> extract -> transform.

const DESTINATION_ROWS: &str = r#"
INSERT INTO courses (id, title, slug) VALUES
  ('c0000000-0000-0000-0000-000000000001', 'Papers to Profits', 'papers-to-profits');
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at, created_at, updated_at)
VALUES
  ('00000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-00000000a11c', 'authenticated', 'authenticated', 'alice@example.com', 'x', '2023-02-01Z', '2023-02-01Z', '2023-02-01Z'),
  ('00000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000b0b', 'authenticated', 'authenticated', 'Bob@Example.com', 'x', '2023-03-01Z', '2023-03-01Z', '2023-03-01Z'),
  ('00000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-0000000e5701', 'authenticated', 'authenticated', 'test1@test.com', 'x', '2023-04-01Z', '2023-04-01Z', '2023-04-01Z'),
  ('00000000-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-00000000ad01', 'authenticated', 'authenticated', 'admin@paperstoprofits.ph', 'x', '2023-01-01Z', '2023-01-01Z', '2023-01-01Z');
INSERT INTO unified_profiles (id, email, first_name, last_name, tags, tier, tier_assignment, last_active_at, created_at, updated_at)
VALUES
  ('a0000000-0000-0000-0000-00000000a11c', 'alice@example.com', 'Alice', 'Old', '{PaidP2P}', 'premium', 'manual', '2024-05-20T10:00:00Z', '2023-02-01Z', '2023-02-01Z'),
  ('a0000000-0000-0000-0000-0000000e5701', 'test1@test.com', 'Test', 'User', '{}', 'viewer', 'auto', NULL, '2023-04-01Z', '2023-04-01Z'),
  ('a0000000-0000-0000-0000-00000000ad01', 'admin@paperstoprofits.ph', 'Site', 'Admin', NULL, 'admin', 'manual', NULL, '2023-01-01Z', '2023-01-01Z');
INSERT INTO transactions (id, user_id, amount, currency, status, payment_provider, payment_provider_id, created_at)
VALUES
  ('70000000-0000-0000-0000-00000000a11c', 'a0000000-0000-0000-0000-00000000a11c', 1000.00, 'PHP', 'PAID', 'xendit', 'inv-1', '2024-03-05T06:22:01Z'),
  ('70000000-0000-0000-0000-0000000e5701', 'a0000000-0000-0000-0000-0000000e5701', 1, 'PHP', 'PAID', 'xendit', 'test-inv', '2023-04-01Z');
INSERT INTO enrollments (id, user_id, course_id, transaction_id, status, progress, last_activity_at, notes, start_date)
VALUES
  ('e0000000-0000-0000-0000-00000000a11c', 'a0000000-0000-0000-0000-00000000a11c', 'c0000000-0000-0000-0000-000000000001', '70000000-0000-0000-0000-00000000a11c', 'active', 50.5, '2024-05-20T10:00:00Z', 'halfway there', '2024-03-05'),
  ('e0000000-0000-0000-0000-0000000e5701', 'a0000000-0000-0000-0000-0000000e5701', 'c0000000-0000-0000-0000-000000000001', '70000000-0000-0000-0000-0000000e5701', 'active', 0, NULL, NULL, '2023-04-01');
INSERT INTO lesson_progress (user_id, enrollment_id, lesson_id, progress_percentage)
VALUES ('a0000000-0000-0000-0000-00000000a11c', 'e0000000-0000-0000-0000-00000000a11c', 'lesson-1', 100);
"#;

const CANONICAL_SOURCE_ROWS: &str = r#"
INSERT INTO xendit (external_id, payment_id, status, description, amount, fees, customer_email, customer_name, created, paid_at, settled_at, currency)
VALUES
  ('inv-1', 'x-1', 'PAID', 'Papers to Profits', 1000.00, 25, 'alice@example.com', 'Alice Santos', '2024-03-05T14:22:01+08:00', '2024-03-05T14:22:01+08:00', '', 'PHP'),
  ('inv-1', 'x-1', 'SETTLED', 'Papers to Profits', 1000.00, 25, 'alice@example.com', 'Alice Santos', '2024-03-05T14:22:01+08:00', '2024-03-05T14:22:01+08:00', '2024-03-06T09:00:00+08:00', 'PHP'),
  ('inv-2', 'x-2', 'PAID', 'PAPERS TO PROFITS', 2000, NULL, '  Bob@Example.COM ', 'Bob Reyes', '2024-03-06T06:22:01.123Z', '2024-03-06T06:22:01.123Z', NULL, NULL),
  ('inv-3', 'x-3', 'PENDING', 'Papers to Profits', 1000, NULL, 'carol@example.com', 'Carol', '2024-03-07T10:00:00Z', NULL, NULL, 'PHP'),
  ('inv-5', 'x-5', 'SETTLED', 'Canva Ebook Bundle', 500, 10, 'dave@example.com', 'Dave Uy', '2024-03-08T08:00:00+08:00', '2024-03-08T08:00:00+08:00', '2024-03-09T08:00:00+08:00', 'PHP');
INSERT INTO systemeio (contact_id, email, first_name, last_name, tags, created_at)
VALUES
  ('s-1', 'alice@example.com', 'Alice', 'Santos', 'PaidP2P,FBInviteSent', '2024-01-01T10:00:00Z'),
  ('s-3', 'gina@example.com', 'Gina', 'Cruz', ' paidp2p ', '2024-02-01T01:00:00Z'),
  ('s-4', 'hank@example.com', 'Hank', 'Lim', 'Imported', '2024-02-02T01:00:00Z');
"#;

const LEGACY_SOURCE_ROWS: &str = r#"
INSERT INTO xendit ("Invoice ID", "External ID", "Status", "Description", "Amount", "Currency", "Fee", "Email", "Customer Email", "Customer Name", "Created Timestamp", "Paid Timestamp", "Settled Timestamp", "Timezone")
VALUES
  ('x-1', 'inv-1', 'PAID', 'Papers to Profits', 1000, 'PHP', '25', NULL, 'alice@example.com', 'Alice Santos', '2024-03-05 14:22:01', '2024-03-05 14:22:01', '', 'Asia/Manila'),
  ('x-1', 'inv-1', 'SETTLED', 'Papers to Profits', 1000, 'PHP', '25', NULL, 'alice@example.com', 'Alice Santos', '2024-03-05 14:22:01', '2024-03-05 14:22:01', '2024-03-06 09:00:00', 'Asia/Manila'),
  ('x-2', 'inv-2', 'PAID', 'PAPERS TO PROFITS', 2000, '', '', '  Bob@Example.COM ', NULL, 'Bob Reyes', '2024-03-06T06:22:01.123Z', '2024-03-06T06:22:01.123Z', '', ''),
  ('x-3', 'inv-3', 'UNPAID', 'Papers to Profits', 1000, 'PHP', '', 'carol@example.com', NULL, 'Carol', '2024-03-07 10:00:00', '', '', 'UTC'),
  ('x-5', 'inv-5', 'SETTLED', 'Canva Ebook Bundle', 500, 'PHP', '₱10.00', 'dave@example.com', NULL, 'Dave Uy', '2024-03-08 08:00:00', '2024-03-08 08:00:00', '2024-03-09 08:00:00', 'GMT+8');
INSERT INTO systemeio ("Email", "First name", "Last name", "Tag", "Date Registered")
VALUES
  ('alice@example.com', 'Alice', 'Santos', 'PaidP2P,FBInviteSent', '2024-01-01 18:00:00'),
  ('gina@example.com', 'Gina', 'Cruz', ' paidp2p ', '2024-02-01 09:00:00'),
  ('hank@example.com', 'Hank', 'Lim', 'Imported', '2024-02-02 09:00:00');
"#;

async fn extract_and_transform(legacy: bool, sources: &str) -> (tempfile::TempDir, String) {
    let url = crate::support::supabase_database("transform_e2e", legacy).await;
    let client = crate::support::connect(&url).await;
    client.batch_execute(DESTINATION_ROWS).await.unwrap();
    client.batch_execute(sources).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::cleanmig(dir.path())
        .arg("extract")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crate::support::cleanmig(dir.path())
        .arg("transform")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "transform failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Every source row accounted for"),
        "reconciliation on stdout: {stdout}"
    );
    (dir, url)
}

#[tokio::test]
async fn extract_then_transform_in_both_source_shapes() {
    let (canonical, url) = extract_and_transform(false, CANONICAL_SOURCE_ROWS).await;
    let (legacy, _) = extract_and_transform(true, LEGACY_SOURCE_ROWS).await;
    let views = [
        "SELECT id, email, first_name, last_name, tags, cohort_date, created_at, tier, tier_assignment, last_active_at FROM stage_profiles ORDER BY email",
        "SELECT id, user_id, amount, currency, status, payment_provider_id, payment_provider_fee, product_type, created_at, paid_at, settled_at, fiscal_year, fiscal_quarter FROM stage_transactions ORDER BY payment_provider_id",
        "SELECT id, user_id, transaction_id, start_date, progress, last_activity_at, notes, cohort_month FROM stage_enrollments ORDER BY user_id",
        "SELECT id, email FROM stage_auth_users ORDER BY email",
        "SELECT 'profiles' AS t, id FROM diff_profiles_delete UNION ALL SELECT 'transactions', id FROM diff_transactions_delete UNION ALL SELECT 'enrollments', id FROM diff_enrollments_delete ORDER BY t",
        "SELECT source_table, outcome, count(*) AS n FROM rejects GROUP BY source_table, outcome ORDER BY source_table, outcome",
    ];
    for sql in views {
        let a = query(canonical.path(), sql).await;
        let b = query(legacy.path(), sql).await;
        assert_eq!(a, b, "the two source shapes differ for {sql}");
    }
    let a = canonical.path();
    let profiles = query(
        a,
        "SELECT id, email, tier, last_active_at FROM stage_profiles ORDER BY email",
    )
    .await;
    // existing customers keep their login id and app-owned columns; the test account goes;
    // the admin stays
    assert!(profiles.contains("a0000000-0000-0000-0000-00000000a11c | alice@example.com        | premium | 2024-05-20T10:00:00Z"), "{profiles}");
    assert!(
        profiles.contains("a0000000-0000-0000-0000-000000000b0b | bob@example.com"),
        "{profiles}"
    );
    assert!(profiles.contains("admin@paperstoprofits.ph"), "{profiles}");
    assert!(!profiles.contains("test1@test.com"), "{profiles}");
    let enrollments = query(a, "SELECT id, progress, notes FROM stage_enrollments WHERE user_id = 'a0000000-0000-0000-0000-00000000a11c'").await;
    assert!(
        enrollments.contains("e0000000-0000-0000-0000-00000000a11c | 50.5"),
        "{enrollments}"
    );
    assert!(enrollments.contains("halfway there"), "{enrollments}");
    let deletes = query(a, "SELECT id FROM diff_profiles_delete UNION ALL SELECT id FROM diff_transactions_delete UNION ALL SELECT id FROM diff_enrollments_delete ORDER BY id").await;
    assert!(
        deletes.contains("a0000000-0000-0000-0000-0000000e5701"),
        "{deletes}"
    );
    assert!(
        deletes.contains("70000000-0000-0000-0000-0000000e5701"),
        "{deletes}"
    );
    assert!(
        deletes.contains("e0000000-0000-0000-0000-0000000e5701"),
        "{deletes}"
    );
    let transactions = query(a, "SELECT id, payment_provider_id, product_type FROM stage_transactions ORDER BY payment_provider_id").await;
    assert!(
        transactions.contains("70000000-0000-0000-0000-00000000a11c | inv-1"),
        "{transactions}"
    );
    assert!(
        transactions.contains("inv-5               | ebook"),
        "Canva kept: {transactions}"
    );
    // the query command prints CSV too
    let out = crate::support::cleanmig(a)
        .args([
            "query",
            "SELECT count(*) AS n FROM stage_profiles",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n4\n");

    // The staged artifacts load: approve, load, and every customer can still log in with
    // their id, the lesson progress survives, the test account's profile is gone.
    for args in [vec!["approve", "--by", "test"], vec!["load", "--apply"]] {
        let out = crate::support::cleanmig(a)
            .args(&args)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let client = crate::support::connect(&url).await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM unified_profiles), \
                    (SELECT count(*) FROM lesson_progress), \
                    (SELECT count(*) FROM unified_profiles WHERE email = 'test1@test.com'), \
                    (SELECT count(*) FROM auth.users u JOIN unified_profiles p ON p.id = u.id)",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<i64> = (0..4).map(|i| row.get(i)).collect();
    assert_eq!(counts, vec![4, 1, 0, 4]);
}

// ---------------------------------------------------------------------------------------------
// The demo data at scale 1 against the generator's ground truth.

async fn column_strings(artifacts: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let ctx = cleanmig::query::session(artifacts, Path::new(PIPELINE))
        .await
        .unwrap();
    let batches = cleanmig::query::execute(&ctx, sql).await.unwrap();
    let mut rows = Vec::new();
    for b in &batches {
        let cols: Vec<ArrayRef> = b
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            rows.push(
                cols.iter()
                    .map(|c| {
                        let s = c.as_any().downcast_ref::<StringArray>().unwrap();
                        s.is_valid(r).then(|| s.value(r).to_string())
                    })
                    .collect(),
            );
        }
    }
    rows
}

fn as_map(rows: Vec<Vec<Option<String>>>) -> BTreeMap<String, Vec<Option<String>>> {
    rows.into_iter()
        .map(|mut r| (r.remove(0).unwrap(), r))
        .collect()
}

async fn demo_matches_ground_truth(legacy: bool) {
    let url = crate::support::fresh_database(if legacy {
        "truth_legacy"
    } else {
        "truth_canon"
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let truth_path = dir.path().join("ground_truth.json");
    crate::support::demo_extract_transform(dir.path(), &url, &truth_path, legacy);
    // Same inputs, same bytes, on realistic data too.
    let first = file_hashes(&dir.path().join("stage"));
    let out = crate::support::cleanmig(dir.path())
        .arg("transform")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        first,
        file_hashes(&dir.path().join("stage")),
        "re-run differs"
    );
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&truth_path).unwrap()).unwrap();
    let a = dir.path();
    let count = |v: &serde_json::Value| v.as_u64().unwrap().to_string();
    let counts = &truth["counts"];
    let one =
        |sql: &'static str| async move { column_strings(a, sql).await[0][0].clone().unwrap() };
    assert_eq!(
        one("SELECT count(*) FROM stage_profiles").await,
        count(&counts["profiles"])
    );
    assert_eq!(
        one("SELECT count(*) FROM stage_auth_users").await,
        count(&counts["auth_users_to_create"])
    );
    assert_eq!(
        one("SELECT count(*) FROM stage_transactions").await,
        count(&counts["transactions"])
    );
    assert_eq!(
        one("SELECT count(*) FROM stage_transactions WHERE product_type = 'ebook'").await,
        count(&counts["transactions_canva"])
    );
    assert_eq!(
        one("SELECT count(*) FROM stage_transactions WHERE user_id IS NULL").await,
        count(&counts["transactions_without_user"])
    );
    assert_eq!(
        one("SELECT count(*) FROM stage_enrollments").await,
        count(&counts["enrollments"])
    );
    assert_eq!(
        one("SELECT count(*) FROM stage_enrollments WHERE transaction_id IS NULL").await,
        count(&counts["enrollments_without_payment"])
    );

    // Every real customer, with their existing login id.
    let profiles = as_map(column_strings(a, "SELECT email, id FROM stage_profiles").await);
    for c in truth["customers"].as_array().unwrap() {
        let email = c["email"].as_str().unwrap();
        let got = profiles
            .get(email)
            .unwrap_or_else(|| panic!("customer {email} missing"));
        if let Some(id) = c["auth_user_id"].as_str() {
            assert_eq!(got[0].as_deref(), Some(id), "{email} keeps their auth id");
        }
    }
    for k in truth["kept_profiles"].as_array().unwrap() {
        let email = k["email"].as_str().unwrap();
        assert_eq!(
            profiles.get(email).and_then(|r| r[0].clone()).as_deref(),
            k["id"].as_str(),
            "kept profile {email}"
        );
    }
    // Every payment, Canva included, with the existing id where there was one.
    let transactions = as_map(
        column_strings(a, "SELECT payment_provider_id, id, product_type, CAST(amount AS VARCHAR), status FROM stage_transactions").await,
    );
    for t in truth["transactions"].as_array().unwrap() {
        let ext = t["external_id"].as_str().unwrap();
        let got = transactions
            .get(ext)
            .unwrap_or_else(|| panic!("payment {ext} missing"));
        if let Some(id) = t["existing_id"].as_str() {
            assert_eq!(got[0].as_deref(), Some(id), "{ext} keeps its id");
        }
        assert_eq!(got[3].as_deref(), t["status"].as_str(), "{ext} status");
    }
    // Enrollments: existing id and progress kept, linked to the first payment.
    let enrollments = as_map(
        column_strings(
            a,
            "SELECT p.email, e.id, CAST(e.progress AS DOUBLE), t.payment_provider_id FROM stage_enrollments e JOIN stage_profiles p ON p.id = e.user_id LEFT JOIN stage_transactions t ON t.id = e.transaction_id",
        )
        .await,
    );
    for e in truth["enrollments"].as_array().unwrap() {
        let email = e["email"].as_str().unwrap();
        let got = enrollments
            .get(email)
            .unwrap_or_else(|| panic!("enrollment of {email} missing"));
        if let Some(id) = e["existing_id"].as_str() {
            assert_eq!(
                got[0].as_deref(),
                Some(id),
                "{email} keeps the enrollment id"
            );
            let progress: f64 = got[1].as_deref().unwrap().parse().unwrap();
            let want = e["progress"]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .or(e["progress"].as_f64())
                .unwrap();
            assert!((progress - want).abs() < 1e-9, "{email} progress");
        }
        assert_eq!(
            got[2].as_deref(),
            e["transaction_external_id"].as_str(),
            "{email} transaction"
        );
    }
    // The test contamination is exactly the delete list.
    for (table, key) in [
        ("profiles", "delete_profile_ids"),
        ("transactions", "delete_transaction_ids"),
        ("enrollments", "delete_enrollment_ids"),
    ] {
        let got: Vec<String> = column_strings(
            a,
            &format!("SELECT id FROM diff_{table}_delete ORDER BY id"),
        )
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
        let want: Vec<String> = truth[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{table} to delete");
    }
}

#[tokio::test]
async fn demo_data_canonical_matches_ground_truth() {
    demo_matches_ground_truth(false).await;
}

#[tokio::test]
async fn demo_data_legacy_matches_ground_truth() {
    demo_matches_ground_truth(true).await;
}

#[tokio::test]
async fn a_memory_pool_too_small_names_the_option_and_keeps_the_last_stage() {
    // Guards bounded memory: when a join cannot fit the pool, the error says what to raise,
    // and the stage from the previous run is untouched.
    let dir = transformed().await;
    let before = file_hashes(&dir.path().join("stage"));
    let out = crate::support::cleanmig(dir.path())
        .args(["transform", "--memory-limit-mib", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--memory-limit-mib"), "{stderr}");
    assert!(stderr.contains(".sql failed"), "{stderr}");
    assert_eq!(file_hashes(&dir.path().join("stage")), before);
    let leftovers = transform_leftovers(dir.path());
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[tokio::test]
async fn a_transform_that_fails_while_writing_puts_the_previous_stage_back() {
    // Guards: a failed run leaves the last stage as it was, even after it began writing the new
    // one (a check that cannot run fails once the staged tables are written).
    let dir = transformed().await;
    let stage = dir.path().join("stage");
    let before = file_hashes(&stage);
    let pipeline = pipeline_with_check(
        dir.path(),
        "zz_broken.sql",
        "-- A check that names a column no table has.\n-- severity: blocking\nSELECT no_such_column FROM profiles\n",
    );
    let out = crate::support::cleanmig(dir.path())
        .arg("transform")
        .env("CLEANMIG_PIPELINE", &pipeline)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("zz_broken.sql"), "{stderr}");
    assert!(stderr.contains("the previous"), "{stderr}");
    assert_eq!(file_hashes(&stage), before);
    let leftovers = transform_leftovers(dir.path());
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[tokio::test]
async fn a_pool_far_smaller_than_the_largest_intermediate_spills_to_the_same_bytes() {
    // Guards bounded memory: with a pool under a fifth of the size of the largest result (the
    // rejects of the demo data at scale 10, held in memory), every operator spills or
    // streams, and the staged artifacts are byte for byte those of a run with the default pool.
    // The demo data at scale 10 needs about 20 MiB (README, "Transform").
    const POOL_MIB: usize = 24;
    let dir = tempfile::tempdir().unwrap();
    let url = crate::support::fresh_database("transform_spill").await;
    let truth = dir.path().join("truth.json");
    crate::support::demo_extract_transform_at(dir.path(), &url, &truth, true, "10");
    let stage = dir.path().join("stage");
    let with_default_pool = file_hashes(&stage);

    let largest: usize = crate::support::read_parquet(&stage.join("rejects.parquet"))
        .iter()
        .map(|b| b.get_array_memory_size())
        .sum();
    assert!(
        largest >= 5 * (POOL_MIB << 20),
        "the largest result ({largest} bytes) is no longer far larger than the pool"
    );

    std::fs::remove_dir_all(&stage).unwrap();
    let out = crate::support::cleanmig(dir.path())
        .args(["transform", "--memory-limit-mib", &POOL_MIB.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "transform with a {POOL_MIB} MiB pool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(file_hashes(&stage), with_default_pool);
}
