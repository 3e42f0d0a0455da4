//! A small Supabase-shaped database with real customers and test contamination, extracted with
//! the real `cleanmig extract`, and the stage (clean target + checks) that transform would write
//! for it, exported through `pg_arrow` (the mapping extract and load use).

use crate::support;
use cleanmig::artifacts::{ArtifactEntry, Manifest, ParquetArtifact};
use cleanmig::pg_arrow::{self, CopyDecoder, Kind};
use cleanmig::sql::ident as quote_ident;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres::Client;

pub const ALICE: &str = "a1111111-1111-4111-8111-111111111111";
pub const BOB: &str = "b2222222-2222-4222-8222-222222222222";
pub const TESTER: &str = "e3333333-3333-4333-8333-333333333333";
pub const CAROL: &str = "c4444444-4444-4444-8444-444444444444";
pub const TX_TEST: &str = "10000000-0000-4000-8000-000000000003";
pub const TX_CAROL: &str = "10000000-0000-4000-8000-000000000004";
pub const EN_ALICE: &str = "20000000-0000-4000-8000-000000000001";
pub const EN_BOB: &str = "20000000-0000-4000-8000-000000000002";
pub const EN_TEST: &str = "20000000-0000-4000-8000-000000000003";
pub const EN_CAROL: &str = "20000000-0000-4000-8000-000000000004";

pub struct Fixture {
    pub url: String,
    pub client: Client,
    pub artifacts: PathBuf,
    _dir: tempfile::TempDir,
}

const DATA: &str = r#"
INSERT INTO public.courses (id, title, slug) VALUES
  ('00000000-0000-4000-8000-00000000c001', 'Papers to Profits', 'papers-to-profits');

INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
  confirmation_token, recovery_token, email_change_token_new, email_change, last_sign_in_at,
  raw_app_meta_data, raw_user_meta_data, created_at, updated_at) VALUES
 ('00000000-0000-0000-0000-000000000000', 'a1111111-1111-4111-8111-111111111111', 'authenticated', 'authenticated',
  'alice@example.com', '$2a$10$abcdefghijklmnopqrstuv', '2024-01-02 03:04:05+00', '', '', '', '', '2024-06-01 10:00:00+00',
  '{"provider":"email","providers":["email"]}', '{"first_name":"Alice"}', '2024-01-02 03:04:05+00', '2024-01-02 03:04:05+00'),
 ('00000000-0000-0000-0000-000000000000', 'b2222222-2222-4222-8222-222222222222', 'authenticated', 'authenticated',
  'bob@example.com', '', '2024-02-02 03:04:05+00', '', '', '', '', NULL,
  '{"provider":"email","providers":["email"]}', '{"first_name":"Bob"}', '2024-02-02 03:04:05+00', '2024-02-02 03:04:05+00'),
 ('00000000-0000-0000-0000-000000000000', 'e3333333-3333-4333-8333-333333333333', 'authenticated', 'authenticated',
  'qa+1@test.com', '', '2024-03-02 03:04:05+00', '', '', '', '', NULL,
  '{"provider":"email","providers":["email"]}', '{}', '2024-03-02 03:04:05+00', '2024-03-02 03:04:05+00');

INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at, id)
SELECT u.id::text, u.id, jsonb_build_object('sub', u.id::text, 'email', u.email), 'email', u.created_at, u.created_at,
       md5('identity' || u.id::text)::uuid
FROM auth.users u;

INSERT INTO public.unified_profiles (id, email, first_name, last_name, tags, cohort_date, systemeio_id,
  created_at, updated_at, last_active_at, tier, tier_assignment, tier_assignment_notes, api_source) VALUES
 ('a1111111-1111-4111-8111-111111111111', 'alice@example.com', 'Alice', 'Old', '{PaidP2P}', '2024-01-02', 'sys-1',
  '2024-01-02 03:04:05+00', '2024-01-02 03:04:05+00', '2024-06-01 10:00:00+00', 'premium', 'manual', 'upgraded by support', 'systemeio'),
 ('b2222222-2222-4222-8222-222222222222', 'bob@example.com', 'Bob', 'Reyes', '{PaidP2P}', '2024-02-02', 'sys-2',
  '2024-02-02 03:04:05+00', '2024-02-02 03:04:05+00', NULL, 'viewer', 'auto', NULL, 'systemeio'),
 ('e3333333-3333-4333-8333-333333333333', 'qa+1@test.com', 'Test', 'Account', '{test}', NULL, NULL,
  '2024-03-02 03:04:05+00', '2024-03-02 03:04:05+00', NULL, 'viewer', 'auto', NULL, 'systemeio');

INSERT INTO public.transactions (id, user_id, amount, currency, status, payment_provider, payment_provider_id,
  description, product_name, product_type, created_at, updated_at, paid_at, metadata) VALUES
 ('10000000-0000-4000-8000-000000000001', 'a1111111-1111-4111-8111-111111111111', 1000, 'PHP', 'PAID', 'xendit', 'ext-1',
  'Papers to Profits', 'Papers to Profits', 'course', '2024-01-02 03:04:05+00', '2024-01-02 03:04:05+00', '2024-01-02 03:04:05+00', '{}'),
 ('10000000-0000-4000-8000-000000000003', 'e3333333-3333-4333-8333-333333333333', 1, 'PHP', 'PAID', 'xendit', 'ext-test',
  'test payment', 'Papers to Profits', 'course', '2024-03-02 03:04:05+00', '2024-03-02 03:04:05+00', '2024-03-02 03:04:05+00', NULL);

INSERT INTO public.enrollments (id, user_id, course_id, transaction_id, status, created_at, updated_at, start_date,
  progress, last_activity_at, notes, cohort_month, cohort_quarter) VALUES
 ('20000000-0000-4000-8000-000000000001', 'a1111111-1111-4111-8111-111111111111', '00000000-0000-4000-8000-00000000c001',
  '10000000-0000-4000-8000-000000000001', 'active', '2024-01-02 03:04:05+00', '2024-01-02 03:04:05+00', '2024-01-02',
  50, '2024-06-01 10:00:00+00', 'halfway through', '2024-01', '2024-Q1'),
 ('20000000-0000-4000-8000-000000000003', 'e3333333-3333-4333-8333-333333333333', '00000000-0000-4000-8000-00000000c001',
  '10000000-0000-4000-8000-000000000003', 'active', '2024-03-02 03:04:05+00', '2024-03-02 03:04:05+00', '2024-03-02',
  0, NULL, NULL, '2024-03', '2024-Q1');

INSERT INTO public.lesson_progress (user_id, enrollment_id, lesson_id, progress_percentage)
VALUES ('a1111111-1111-4111-8111-111111111111', '20000000-0000-4000-8000-000000000001', 'lesson-1', 100);

INSERT INTO public.xendit (external_id, status, amount, customer_name, customer_email, description, created, currency) VALUES
 ('ext-1', 'PAID', 1000, 'Alice Santos', 'alice@example.com', 'Papers to Profits', '2024-01-02T03:04:05.000Z', 'PHP'),
 ('ext-4', 'SETTLED', 1500, 'Carol Cruz', 'carol@example.com', 'Papers to Profits', '2024-04-02T03:04:05.000Z', 'PHP');
INSERT INTO public.systemeio (contact_id, email, first_name, last_name, tags, created_at, updated_at) VALUES
 ('sys-1', 'alice@example.com', 'Alice', 'Santos', 'PaidP2P', '2024-01-02', '2024-05-01'),
 ('sys-2', 'bob@example.com', 'Bob', 'Reyes', 'PaidP2P', '2024-02-02', '2024-02-02'),
 ('sys-4', 'carol@example.com', 'Carol', 'Cruz', 'PaidP2P', '2024-04-02', '2024-04-02');
"#;

/// The clean target, as transform would stage it (built here with SQL, in a scratch schema).
const STAGE: &str = r#"
CREATE SCHEMA fx;
CREATE TABLE fx.auth_users (LIKE auth.users);
INSERT INTO fx.auth_users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
  confirmation_token, recovery_token, email_change_token_new, email_change,
  raw_app_meta_data, raw_user_meta_data, created_at, updated_at, is_sso_user, is_anonymous) VALUES
 ('00000000-0000-0000-0000-000000000000', 'c4444444-4444-4444-8444-444444444444', 'authenticated', 'authenticated',
  'carol@example.com', '', '2024-04-02 03:04:05+00', '', '', '', '',
  '{"provider":"email","providers":["email"]}', '{"first_name":"Carol","last_name":"Cruz"}',
  '2024-04-02 03:04:05+00', '2024-04-02 03:04:05+00', false, false);
CREATE TABLE fx.auth_identities (LIKE auth.identities);
INSERT INTO fx.auth_identities (provider_id, user_id, identity_data, provider, created_at, updated_at, id) VALUES
 ('c4444444-4444-4444-8444-444444444444', 'c4444444-4444-4444-8444-444444444444',
  '{"sub":"c4444444-4444-4444-8444-444444444444","email":"carol@example.com","email_verified":true,"phone_verified":false}',
  'email', '2024-04-02 03:04:05+00', '2024-04-02 03:04:05+00', 'd4444444-4444-4444-8444-444444444444');

CREATE TABLE fx.profiles AS SELECT * FROM public.unified_profiles WHERE email <> 'qa+1@test.com';
UPDATE fx.profiles SET last_name = 'Santos', updated_at = '2025-01-01 00:00:00+00' WHERE email = 'alice@example.com';
-- App-owned columns in the staged rows differ from the live ones: the load must not write them.
UPDATE fx.profiles SET tier = 'viewer', tier_assignment = 'auto', tier_assignment_notes = NULL, last_active_at = NULL;
INSERT INTO fx.profiles (id, email, first_name, last_name, tags, cohort_date, systemeio_id, created_at, updated_at, api_source)
VALUES ('c4444444-4444-4444-8444-444444444444', 'carol@example.com', 'Carol', 'Cruz', '{PaidP2P}', '2024-04-02', 'sys-4',
        '2024-04-02 03:04:05+00', '2024-04-02 03:04:05+00', 'systemeio');

CREATE TABLE fx.transactions AS
  SELECT t.*, 'xendit'::text AS api_source, NULL::timestamptz AS last_api_sync_at, 1 AS api_sync_version,
         t.paid_at AS processed_at, 2024 AS fiscal_year, 1 AS fiscal_quarter
  FROM public.transactions t WHERE t.id <> '10000000-0000-4000-8000-000000000003';
INSERT INTO fx.transactions (id, user_id, amount, currency, status, payment_provider, payment_provider_id, description,
  product_name, product_type, created_at, updated_at, paid_at, metadata, api_source, api_sync_version, processed_at,
  fiscal_year, fiscal_quarter)
VALUES ('10000000-0000-4000-8000-000000000004', 'c4444444-4444-4444-8444-444444444444', 1500.50, 'PHP', 'SETTLED', 'xendit',
        'ext-4', 'Papers to Profits', 'Papers to Profits', 'course', '2024-04-02 03:04:05+00', '2024-04-02 03:04:05+00',
        '2024-04-02 03:04:05+00', '{"source":"xendit"}', 'xendit', 1, '2024-04-02 03:04:05+00', 2024, 2);

CREATE TABLE fx.enrollments AS SELECT * FROM public.enrollments WHERE id <> '20000000-0000-4000-8000-000000000003';
UPDATE fx.enrollments SET progress = 0, last_activity_at = NULL, notes = NULL, completion_date = NULL;
INSERT INTO fx.enrollments (id, user_id, course_id, transaction_id, status, created_at, updated_at, start_date, progress,
  cohort_month, cohort_quarter) VALUES
 ('20000000-0000-4000-8000-000000000002', 'b2222222-2222-4222-8222-222222222222', '00000000-0000-4000-8000-00000000c001',
  NULL, 'active', '2024-02-02 03:04:05+00', '2024-02-02 03:04:05+00', '2024-02-02', 0, '2024-02', '2024-Q1'),
 ('20000000-0000-4000-8000-000000000004', 'c4444444-4444-4444-8444-444444444444', '00000000-0000-4000-8000-00000000c001',
  '10000000-0000-4000-8000-000000000004', 'active', '2024-04-02 03:04:05+00', '2024-04-02 03:04:05+00', '2024-04-02', 0,
  '2024-04', '2024-Q2');
"#;

fn quoted(table: &str) -> String {
    let (schema, name) = table.split_once('.').unwrap();
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Export a table (all columns but `skip`) to Parquet with pg_arrow's mapping.
async fn export(
    client: &Client,
    table: &str,
    skip: &[&str],
    dest: &Path,
) -> (PathBuf, u64, arrow::datatypes::SchemaRef) {
    let cols = pg_arrow::table_columns(client, table).await.unwrap();
    let mut fields = Vec::new();
    let mut kinds = Vec::new();
    let mut exprs = Vec::new();
    for col in cols.iter().filter(|c| !skip.contains(&c.name.as_str())) {
        let (kind, expr) = if col.typname == "numeric" && col.category != 'A' {
            let row = client
                .query_one(&pg_arrow::numeric_profile_sql(table, &[&col.name]), &[])
                .await
                .unwrap();
            (
                pg_arrow::numeric_kind(col.typmod, Some((row.get(0), row.get(1), row.get(2)))),
                quote_ident(&col.name),
            )
        } else {
            pg_arrow::extract_kind(col)
        };
        let expr = if kind == Kind::Text && col.typname == "numeric" {
            format!("{}::text", quote_ident(&col.name))
        } else {
            expr
        };
        fields.push(pg_arrow::field(
            &col.name,
            &kind,
            &col.type_name,
            !col.not_null,
        ));
        kinds.push(kind);
        exprs.push(expr);
    }
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    let decoder = CopyDecoder::new(table, schema.clone(), kinds, false);
    let mut writer = ParquetArtifact::create(dest, schema.clone()).unwrap();
    pg_arrow::copy_out(
        client,
        &format!("SELECT {} FROM {table}", exprs.join(", ")),
        decoder,
        |batch, _| std::future::ready(writer.write(&batch)),
    )
    .await
    .unwrap();
    let (path, rows) = writer.finish().unwrap();
    (path, rows, schema)
}

pub async fn fixture(prefix: &str) -> Fixture {
    fixture_with_checks(prefix, &[("unique_emails", "blocking", true, 0)]).await
}

/// `checks`: (name, severity, passed, failing rows).
pub async fn fixture_with_checks(prefix: &str, checks: &[(&str, &str, bool, u64)]) -> Fixture {
    // The tool runs as the app's role (`url`); the fixture's own client plays the app and
    // Supabase itself, as the superuser.
    let url = support::supabase_database(prefix, false).await;
    let client = support::connect(&support::as_superuser(&url)).await;
    client.batch_execute(DATA).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let extract_dir = artifacts.join("extract");
    let stage_dir = artifacts.join("stage");

    // Extract: the real command.
    let out = support::cleanmig(&artifacts)
        .args(["extract", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "extract: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let extract = Manifest::read(&extract_dir).unwrap();
    let fingerprint = extract.fingerprint.clone();
    let extracted_at = extract.extracted_at.clone();

    // Stage.
    client.batch_execute(STAGE).await.unwrap();
    let mut staged = BTreeMap::new();
    for (table, artifact, skip) in [
        ("fx.auth_users", "auth_users", &["confirmed_at"][..]),
        ("fx.auth_identities", "auth_identities", &["email"][..]),
        ("fx.profiles", "profiles", &[][..]),
        ("fx.transactions", "transactions", &[][..]),
        ("fx.enrollments", "enrollments", &[][..]),
    ] {
        let (path, rows, schema) = export(
            &client,
            &quoted(table),
            skip,
            &stage_dir.join(format!("{artifact}.parquet")),
        )
        .await;
        staged.insert(
            artifact.to_string(),
            ArtifactEntry::describe(&stage_dir, &path, rows, &schema).unwrap(),
        );
    }
    client
        .batch_execute("DROP SCHEMA fx CASCADE")
        .await
        .unwrap();
    let checks: Vec<serde_json::Value> = checks
        .iter()
        .map(|(name, severity, passed, failing)| {
            serde_json::json!({"name": name, "severity": severity, "passed": passed,
                               "failing_rows": failing, "description": "fixture", "sample": []})
        })
        .collect();
    cleanmig::artifacts::write_json(
        &stage_dir.join("checks.json"),
        &serde_json::json!({"checks": checks}),
    )
    .unwrap();
    cleanmig::artifacts::write_atomic(&stage_dir.join("report.md"), b"# report\n").unwrap();
    Manifest {
        stage: "transform".into(),
        tool_version: "test".into(),
        extracted_at,
        source: None,
        fingerprint,
        tables: BTreeMap::new(),
        artifacts: staged,
        catalog: extract.catalog.clone(),
        load_validation: Some(
            cleanmig::artifacts::LoadValidation::read(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/pipeline"
            )))
            .unwrap(),
        ),
    }
    .write(&stage_dir)
    .unwrap();

    Fixture {
        url,
        client,
        artifacts,
        _dir: dir,
    }
}

impl Fixture {
    pub fn cmd(&self, args: &[&str]) -> std::process::Output {
        support::cleanmig(&self.artifacts)
            .args(args)
            .args(["--database-url", &self.url])
            .output()
            .unwrap()
    }

    /// Extract again (the database changed since the fixture's extract) and point the
    /// fixture's stage at the new extract, as a transform run would.
    pub fn extract_again(&self) {
        let out = self.cmd(&["extract"]);
        assert!(
            out.status.success(),
            "extract: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.restage();
    }

    /// The fixture's stage was made for the first extract: point it at the current one (same
    /// data, new fingerprint), as a transform run would.
    pub fn restage(&self) {
        let extract = Manifest::read(&self.artifacts.join("extract")).unwrap();
        let stage_dir = self.artifacts.join("stage");
        let mut stage = Manifest::read(&stage_dir).unwrap();
        stage.fingerprint = extract.fingerprint.clone();
        stage.extracted_at = extract.extracted_at.clone();
        stage.write(&stage_dir).unwrap();
    }

    pub fn approve(&self) {
        let out = support::cleanmig(&self.artifacts)
            .args(["approve", "--by", "tester"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run `load` with extra args; returns (success, stdout JSON, stderr).
    pub fn load(&self, args: &[&str]) -> (bool, serde_json::Value, String) {
        let mut all = vec!["load"];
        all.extend_from_slice(args);
        let out = self.cmd(&all);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "load printed no JSON ({e}): {}\n{stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.success(), json, stderr)
    }

    /// md5 of every table's rows (all tables of public and auth; the operation log lives in the
    /// tool's own schema `cleanmig`, which is left out),
    /// each table's column list, and the schemas. With `columns`, tables are read with those
    /// columns only (to compare contents across a schema alignment).
    pub async fn checksums(
        &self,
        columns: Option<&BTreeMap<String, String>>,
    ) -> BTreeMap<String, String> {
        let tables = self
            .client
            .query(
                "SELECT format('%I.%I', table_schema, table_name), \
                        string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) \
                 FROM information_schema.columns \
                 WHERE table_schema IN ('public', 'auth') AND table_name <> 'population_operation_log' \
                 GROUP BY 1 ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for row in tables {
            let table: String = row.get(0);
            let cols: String = match columns {
                Some(c) => c[&format!("columns {table}")].clone(),
                None => row.get(1),
            };
            let md5: String = self
                .client
                .query_one(
                    &format!(
                        "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM (SELECT {cols} FROM {table}) x"
                    ),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            out.insert(table.clone(), md5);
            if columns.is_none() {
                out.insert(format!("columns {table}"), row.get(1));
            }
        }
        let schemas: String = self
            .client
            .query_one(
                // Temporary schemas come and go with server backends, not with the data.
                "SELECT string_agg(nspname::text, ',' ORDER BY nspname) FROM pg_namespace \
                 WHERE nspname <> 'cleanmig' AND nspname !~ '^pg_(toast_)?temp_'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        out.insert("schemas".into(), schemas);
        out
    }

    /// Start the real binary in the background against this database (stdout and stderr
    /// captured), with an optional test fault hook (`CLEANMIG_TEST_FAULT`).
    pub fn spawn(&self, args: &[&str], fault: Option<&str>) -> std::process::Child {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("cleanmig"));
        cmd.args(args)
            .args(["--database-url", &self.url])
            .env("CLEANMIG_ARTIFACTS", &self.artifacts)
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(fault) = fault {
            cmd.env("CLEANMIG_TEST_FAULT", fault);
        }
        cmd.spawn().unwrap()
    }

    /// Wait (up to a minute) until `sql` counts more than zero rows; returns whether it did.
    pub async fn wait_until(&self, sql: &str) -> bool {
        for _ in 0..1200 {
            if self.count(sql).await > 0 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    /// Wait until a session of the tool on this database waits for a lock.
    pub async fn wait_for_lock_wait(&self) -> bool {
        self.wait_until(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cleanmig' \
             AND datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client.query_one(sql, &[]).await.unwrap().get(0)
    }
}
