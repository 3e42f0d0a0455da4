//! The extract stage against a real Postgres.

use crate::support;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Schema};
use std::path::Path;

const CANONICAL_ROWS: &str = r#"
INSERT INTO xendit (id, external_id, payment_id, status, amount, fees, customer_name, customer_email,
                    description, created, paid_at, settled_at, currency, bank, paid_amount)
VALUES ('6f1c2d0e-9a43-4b7e-8d16-1f2a3b4c5d6e', 'p2p-0001', 'inv_1', 'PAID', 1000.00, 25.5,
        'Ma. Luisa Peñaflor', ' Luisa@Example.com ', 'Papers to Profits', '2024-03-05T06:22:01.123Z',
        '2024-03-05 14:22:01', '', 'PHP', 'BPI', 974.5),
       ('0b5e8c61-7d2f-4f10-9e3a-5c6d7e8f9a0b', 'p2p-0002', 'inv_2', 'EXPIRED', 1000, NULL,
        NULL, 'juan@example.com', 'Papers to Profits', '2024-03-06T10:00:00+08:00', NULL, NULL, 'PHP', NULL, NULL);
INSERT INTO systemeio (id, email, first_name, last_name, tags, created_at)
VALUES ('5d1e3f4a-2b6c-4d8e-9f0a-1b2c3d4e5f6a', 'Luisa@example.com', 'Ma. Luisa', 'Peñaflor', 'PaidP2P,FBInviteSent', '2024-03-01 08:00:00+08');
"#;

const LEGACY_ROWS: &str = r#"
INSERT INTO xendit ("Invoice ID", "External ID", "Status", "Description", "Amount", "Currency", "Fee",
                    "Received Amount", "Email", "Customer Email", "Customer Name", "Bank Name",
                    "Created Timestamp", "Paid Timestamp", "Settled Timestamp", "Timezone")
VALUES ('inv_1', 'p2p-0001', 'PAID', 'Papers to Profits', 1000, 'PHP', '₱25.50', '974.50', NULL,
        ' Luisa@Example.com ', 'Ma. Luisa Peñaflor', 'BPI', '2024-03-05T06:22:01.123Z', '2024-03-05 14:22:01', '', 'Asia/Manila');
INSERT INTO systemeio ("Email", "First name", "Last name", "Tag", "Date Registered")
VALUES ('Luisa@example.com', 'Ma. Luisa', 'Peñaflor', 'PaidP2P,FBInviteSent', '2024-03-01 08:00:00');
"#;

/// Run `cleanmig extract` on a thread of its own, so that the test's other tasks (an app
/// writing meanwhile) keep running.
async fn extract(url: &str, artifacts: &Path) -> std::process::Output {
    let mut cmd = support::cleanmig(artifacts);
    cmd.arg("extract").env("DATABASE_URL", url);
    tokio::task::spawn_blocking(move || cmd.output().expect("run cleanmig extract"))
        .await
        .expect("the extract's thread")
}

/// [`extract`] into a new directory, which it returns; the extract must succeed.
async fn extracted(url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = extract(url, dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn schema_of(path: &Path) -> Schema {
    let batches = support::read_parquet(path);
    let schema = batches[0].schema();
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<_>>(),
    )
}

fn column_text(path: &Path, column: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for batch in support::read_parquet(path) {
        let array = batch
            .column_by_name(column)
            .unwrap_or_else(|| panic!("no column {column}"));
        let strings = array.as_string::<i32>();
        for i in 0..strings.len() {
            out.push(strings.is_valid(i).then(|| strings.value(i).to_string()));
        }
    }
    out
}

#[tokio::test]
async fn both_source_shapes_extract_to_the_same_canonical_parquet() {
    let canonical = support::supabase_database("extract_canon", false).await;
    let legacy = support::supabase_database("extract_legacy", true).await;
    support::connect(&canonical)
        .await
        .batch_execute(CANONICAL_ROWS)
        .await
        .unwrap();
    support::connect(&legacy)
        .await
        .batch_execute(LEGACY_ROWS)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (url, artifacts) in [(&canonical, &a), (&legacy, &b)] {
        let out = extract(url, artifacts).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for table in ["xendit", "systemeio"] {
        let (fa, fb) = (
            a.join(format!("extract/{table}.parquet")),
            b.join(format!("extract/{table}.parquet")),
        );
        assert_eq!(
            schema_of(&fa),
            schema_of(&fb),
            "{table}: canonical columns differ between shapes"
        );
        let first = schema_of(&fa);
        assert_eq!(first.field(0).name(), "_source_row");
        assert!(first
            .fields()
            .iter()
            .skip(1)
            .all(|f| f.data_type() == &DataType::Utf8));
    }
    let xa = a.join("extract/xendit.parquet");
    let xb = b.join("extract/xendit.parquet");
    // The same payment reads the same in both shapes; values are text exactly as stored.
    for column in [
        "external_id",
        "payment_id",
        "status",
        "description",
        "customer_email",
        "customer_name",
        "bank",
        "created",
        "paid_at",
        "settled_at",
    ] {
        assert_eq!(
            column_text(&xa, column)[0],
            column_text(&xb, column)[0],
            "xendit.{column}"
        );
    }
    assert_eq!(column_text(&xa, "amount")[0].as_deref(), Some("1000.00"));
    assert_eq!(column_text(&xb, "amount")[0].as_deref(), Some("1000"));
    assert_eq!(column_text(&xb, "fees")[0].as_deref(), Some("₱25.50"));
    assert_eq!(
        column_text(&xb, "timezone")[0].as_deref(),
        Some("Asia/Manila")
    );
    assert_eq!(column_text(&xa, "timezone")[0], None);
    assert_eq!(
        column_text(&xb, "customer_email")[0].as_deref(),
        Some(" Luisa@Example.com ")
    );
    let sb = b.join("extract/systemeio.parquet");
    assert_eq!(
        column_text(&sb, "tags")[0].as_deref(),
        Some("PaidP2P,FBInviteSent")
    );
    assert_eq!(
        column_text(&sb, "created_at")[0].as_deref(),
        Some("2024-03-01 08:00:00")
    );
    assert_eq!(
        column_text(&sb, "first_name")[0].as_deref(),
        Some("Ma. Luisa")
    );

    // The manifest records rows, checksums, schemas and fingerprints, and no password.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("extract/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["artifacts"]["xendit"]["rows"], 1);
    assert_eq!(
        manifest["artifacts"]["xendit"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(
        manifest["tables"]["\"public\".\"xendit\""]["role"],
        "source"
    );
    assert_eq!(
        manifest["tables"]["\"public\".\"lesson_progress\""]["role"],
        "dependent"
    );
    for name in [
        "auth_users",
        "auth_identities",
        "courses",
        "unified_profiles",
        "transactions",
        "enrollments",
        "user_tags",
        "purchase_leads",
        "ebook_contacts",
        "lesson_progress",
    ] {
        assert!(
            manifest["artifacts"][name].is_object(),
            "{name} missing from the manifest"
        );
    }
    let sha = cleanmig::artifacts::sha256_file(&xb).unwrap();
    assert_eq!(manifest["artifacts"]["xendit"]["sha256"], sha.as_str());
}

#[tokio::test]
async fn artifacts_are_private_and_the_password_never_shows() {
    let url = support::supabase_database("extract_private", true).await;
    let admin = support::connect(&support::as_superuser(&url)).await;
    admin
        .batch_execute("CREATE ROLE extractor LOGIN SUPERUSER PASSWORD 'Sup3rSecret!'")
        .await
        .unwrap_or(());
    let with_password = support::as_superuser(&url).replace("postgres@", "extractor:Sup3rSecret!@");
    let dir = tempfile::tempdir().unwrap();
    let out = extract(&with_password, dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Sup3rSecret"), "{stderr}");
    assert!(stderr.contains("extractor:***@"), "{stderr}");
    let manifest = std::fs::read_to_string(dir.path().join("extract/manifest.json")).unwrap();
    assert!(!manifest.contains("Sup3rSecret"));
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir.path().join("extract")).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.path().display());
    }
}

#[tokio::test]
async fn a_missing_required_column_names_table_column_and_what_was_found() {
    let url = support::supabase_database("extract_missing", true).await;
    support::connect(&url)
        .await
        .batch_execute(r#"ALTER TABLE xendit RENAME COLUMN "External ID" TO "Reference""#)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = extract(&url, dir.path()).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("table public.xendit has no column for required `external_id`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"Reference\""),
        "the columns found are listed: {stderr}"
    );
    assert!(
        stderr.contains("source_columns.csv"),
        "the fix is named: {stderr}"
    );
    assert!(
        !dir.path().join("extract").exists(),
        "nothing half-written is left"
    );
}

/// Every mapped type round-trips with its value intact: Postgres -> Parquet -> Postgres.
#[tokio::test]
async fn every_mapped_type_round_trips() {
    let url = support::supabase_database("extract_types", false).await;
    let client = support::connect(&url).await;
    client
        .batch_execute(
            r#"
            CREATE TABLE public.type_zoo (
              id uuid PRIMARY KEY,
              profile_id uuid REFERENCES public.unified_profiles (id),
              name text, code varchar(10), flag bool, small int2, medium int4, big int8,
              ratio float8, price numeric(12,2), amount numeric, tiny numeric, wide numeric(50,2),
              at timestamptz, local_at timestamp, day date, doc jsonb, raw json,
              tags text[], ids uuid[], blob bytea, span interval, addr inet
            );
            INSERT INTO public.type_zoo VALUES
              ('00000000-0000-0000-0000-000000000001', NULL, 'Peñaflor, Ma. Luisa', 'ñ', true, -32768, 2147483647,
               -9223372036854775808, 1.5, -1234567890.12, 123456789012345678901234567.123456, -0.000001, 1234.5,
               '2024-03-05 14:22:01.123456+08', '2024-03-05 14:22:01', '2024-02-29', '{"a": [1, "ñ"]}', '{"b":1}',
               '{}', '{00000000-0000-0000-0000-00000000000a}', '\x00ff', '1 day 02:00', '10.0.0.1'),
              ('00000000-0000-0000-0000-000000000002', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
              ('00000000-0000-0000-0000-000000000003', NULL, '', '', false, 0, 0, 0, -0.0, 0, 0, 0, -99.99,
               '1970-01-01 00:00:00+00', '1999-12-31 23:59:59.999999', '1900-01-01', '[]', '[]',
               '{"a b", NULL, "c,d"}', '{}', '', '0', '::1');
            "#,
        )
        .await
        .unwrap();
    let dir = extracted(&url).await;

    let path = dir.path().join("extract/type_zoo.parquet");
    let types: Vec<(String, DataType)> = schema_of(&path)
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let find = |n: &str| types.iter().find(|(name, _)| name == n).unwrap().1.clone();
    assert_eq!(find("id"), DataType::Utf8);
    assert_eq!(find("price"), DataType::Decimal128(38, 2));
    assert_eq!(find("amount"), DataType::Decimal128(38, 6));
    assert_eq!(find("tiny"), DataType::Decimal128(38, 6));
    // A declared precision past DECIMAL(38) is typed by the values it holds.
    assert_eq!(find("wide"), DataType::Decimal128(38, 2));
    assert_eq!(find("at").to_string(), "Timestamp(µs, \"UTC\")");
    assert_eq!(find("day"), DataType::Date32);
    assert!(matches!(find("tags"), DataType::List(_)));
    assert_eq!(find("span"), DataType::Utf8);

    // Load the file back into a copy of the table and compare row by row.
    client
        // interval and inet are extracted as text, so they come back into text columns.
        .batch_execute(
            "CREATE TABLE public.type_zoo_copy (LIKE public.type_zoo);
             ALTER TABLE public.type_zoo_copy ALTER span TYPE text, ALTER addr TYPE text;",
        )
        .await
        .unwrap();
    let batches = support::read_parquet(&path);
    let schema = batches[0].schema();
    let rows = cleanmig::pg_arrow::copy_in(
        &client,
        "public.type_zoo_copy",
        &schema,
        batches.into_iter().map(Ok),
    )
    .await
    .unwrap();
    assert_eq!(rows, 3);
    // Values compare equal (numeric 0 and 0.000000 are the same value); json has no
    // equality operator and interval/inet came back as text, so those compare as text.
    let cols =
        "id, profile_id, name, code, flag, small, medium, big, ratio, price, amount, tiny, wide, at, \
                local_at, day, doc, raw::text, tags, ids, blob, span::text, addr::text";
    let text_diff: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM ((SELECT {cols} FROM type_zoo EXCEPT ALL SELECT {cols} FROM type_zoo_copy) \
                 UNION ALL (SELECT {cols} FROM type_zoo_copy EXCEPT ALL SELECT {cols} FROM type_zoo)) d"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(text_diff, 0, "rows differ after the round trip");
}

/// `rows` legacy-shaped contacts of about 225 bytes each, `contact1@example.com` onwards.
async fn insert_contacts(client: &tokio_postgres::Client, rows: u32) {
    client
        .batch_execute(&format!(
            "INSERT INTO systemeio (\"Email\", \"First name\", \"Last name\", \"Tag\", \"Date Registered\")
             SELECT 'contact' || g || '@example.com', 'First ' || md5(g::text), 'Last ' || md5((g * 7)::text) || md5((g * 11)::text),
                    'Imported,' || md5((g * 13)::text) || ',' || md5((g * 17)::text), '2024-01-01 00:00:00'
             FROM generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
}

/// Memory stays flat: two million rows stream through without being held in memory.
#[tokio::test]
async fn two_million_rows_extract_with_bounded_memory() {
    let url = support::supabase_database("extract_million", true).await;
    let client = support::connect(&url).await;
    insert_contacts(&client, 2_000_000).await;
    let raw_bytes: i64 = client
        .query_one("SELECT sum(length(s::text))::int8 FROM systemeio s", &[])
        .await
        .unwrap()
        .get(0);
    let dir = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("cleanmig");
    // Reaped by wait4 below, which also reports the child's peak RSS.
    #[allow(clippy::zombie_processes)]
    let mut child = std::process::Command::new(bin)
        .arg("extract")
        .env("DATABASE_URL", &url)
        .env("CLEANMIG_ARTIFACTS", dir.path())
        .env(
            "CLEANMIG_PIPELINE",
            concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline"),
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it in for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    assert_eq!(status, 0, "{stderr}");
    let peak_bytes = usage.ru_maxrss as i64 * 1024;
    eprintln!(
        "extract of 2,000,000 rows: peak RSS {} MiB",
        peak_bytes >> 20
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("extract/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["artifacts"]["systemeio"]["rows"], 2_000_000);
    // Holding the table would take more than its raw size; streaming takes a fraction of it:
    // a row group's worth of rows and a few batches, whatever the table's size (about 110 MiB
    // here, a quarter of the raw size).
    assert!(
        raw_bytes > 400 << 20,
        "the table must be large enough to tell: {raw_bytes}"
    );
    assert!(
        peak_bytes < raw_bytes / 2,
        "peak RSS {} MiB for {} MiB of data",
        peak_bytes >> 20,
        raw_bytes >> 20
    );
}

#[tokio::test]
async fn both_connections_read_one_snapshot_while_the_app_writes() {
    // Guards: the extract reads its tables on two connections; a payment and a contact the app
    // commits together are either both in the extract or both absent.
    let url = support::supabase_database("extract_one_snapshot", true).await;
    let client = support::connect(&url).await;
    // systemeio is the largest table and xendit the next, so the two are copied at once, one
    // on each connection.
    client
        .batch_execute(
            "INSERT INTO systemeio (\"Email\", \"First name\", \"Last name\", \"Tag\", \"Date Registered\")
             SELECT 'contact' || g || '@example.com', md5(g::text), md5((g * 7)::text), 'Imported', '2024-01-01 00:00:00'
             FROM generate_series(1, 300000) g;
             INSERT INTO xendit (\"Invoice ID\", \"External ID\", \"Status\", \"Amount\", \"Customer Email\")
             SELECT 'inv_' || g, 'p2p-' || g, 'PAID', 1000, 'payer' || g || '@example.com'
             FROM generate_series(1, 100000) g;",
        )
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let committed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (url, stop, committed) = (url.clone(), stop.clone(), committed.clone());
        tokio::spawn(async move {
            let app = support::connect(&url).await;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                app.batch_execute(
                    "BEGIN;
                     INSERT INTO systemeio (\"Email\", \"Tag\") VALUES ('app@example.com', 'PaidP2P');
                     INSERT INTO xendit (\"External ID\", \"Status\", \"Customer Email\") VALUES ('app', 'PAID', 'app@example.com');
                     COMMIT",
                )
                .await
                .unwrap();
                committed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    while committed.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = extract(&url, dir.path()).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("extract/manifest.json")).unwrap())
            .unwrap();
    let rows = |a: &str| manifest["artifacts"][a]["rows"].as_u64().unwrap();
    let (contacts, payments) = (rows("systemeio") - 300_000, rows("xendit") - 100_000);
    let total = committed.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        contacts, payments,
        "one snapshot: {contacts} contacts, {payments} payments"
    );
    assert!(
        contacts >= 10,
        "the pairs committed before the extract are in it"
    );
    assert!(
        contacts < total,
        "the app kept writing during the extract ({contacts} of {total} pairs extracted)"
    );
}

#[tokio::test]
async fn a_large_table_is_copied_from_its_first_page_wherever_another_scan_stopped() {
    // Guards byte-identical re-runs: Postgres starts a scan of a table larger than a quarter of
    // `shared_buffers` where the last scan of it stopped (`synchronize_seqscans`), so without
    // care a `LIMIT` query run before the extract moves the table's rows around in its file.
    let url = support::supabase_database("extract_scan_start", true).await;
    let client = support::connect(&url).await;
    insert_contacts(&client, 250_000).await;
    let row = client
        .query_one(
            "SELECT pg_relation_size('systemeio'),
                    (SELECT setting::int8 * current_setting('block_size')::int8 / 4
                     FROM pg_settings WHERE name = 'shared_buffers')",
            &[],
        )
        .await
        .unwrap();
    let (table_bytes, sync_scan_above): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        table_bytes > sync_scan_above,
        "the table ({table_bytes} bytes) must be larger than a quarter of shared_buffers \
         ({sync_scan_above} bytes) for its scans to be synchronized"
    );
    let in_table_order: Vec<Option<String>> = client
        .query("SELECT \"Email\" FROM systemeio ORDER BY ctid", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    // A scan that stops part-way leaves the table's scan position in the middle.
    let reader = support::connect(&url).await;
    reader
        .batch_execute(
            "SET max_parallel_workers_per_gather = 0;
             SELECT \"Email\" FROM systemeio OFFSET 150000 LIMIT 1",
        )
        .await
        .unwrap();
    let dir = extracted(&url).await;
    let extracted = column_text(&dir.path().join("extract/systemeio.parquet"), "email");
    assert_eq!(extracted.len(), in_table_order.len());
    let first_out_of_place = extracted
        .iter()
        .zip(&in_table_order)
        .position(|(a, b)| a != b);
    assert_eq!(
        first_out_of_place,
        None,
        "rows extracted out of the table's order, the first at row {:?}: {:?}",
        first_out_of_place,
        first_out_of_place.map(|i| &extracted[i])
    );
}

/// The `row_hash` column of a row-hash artifact, sorted.
fn row_hashes(path: &Path) -> Vec<i64> {
    let mut out: Vec<i64> = support::read_parquet(path)
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name("row_hash").expect("row_hash column");
            col.as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn row_hashes_cover_the_columns_a_load_may_overwrite_and_are_postgres_own() {
    // Guards the load's value-drift shortcut: a hash that left out a column the load writes
    // would let a change the app made there go unseen.
    let fx = crate::load_fixture::fixture("extract_row_hashes").await;
    let manifest = cleanmig::artifacts::Manifest::read(&fx.artifacts.join("extract")).unwrap();
    let reconciled = ["unified_profiles", "transactions", "enrollments"];
    for (name, table) in &manifest.tables {
        let expected = reconciled
            .iter()
            .any(|r| name == &format!("\"public\".\"{r}\""));
        assert_eq!(table.row_hashes.is_some(), expected, "{name}");
    }
    let profiles = &manifest.tables["\"public\".\"unified_profiles\""];
    let hashes = profiles.row_hashes.as_ref().unwrap();
    assert_eq!(hashes.key, "id");
    for left_out in [
        "id",
        "updated_at",
        "tier",
        "tier_assignment",
        "last_active_at",
    ] {
        assert!(
            !hashes.columns.iter().any(|c| c == left_out),
            "{left_out}: {hashes:?}"
        );
    }
    for written in ["email", "first_name", "tags", "created_at"] {
        assert!(
            hashes.columns.iter().any(|c| c == written),
            "{written}: {hashes:?}"
        );
    }
    let entry = &manifest.artifacts[&hashes.artifact];
    assert_eq!(entry.rows, profiles.fingerprint.rows);
    let path = fx.artifacts.join("extract").join(&entry.file);

    // Postgres gives the same hash of each row over the listed columns.
    let row: Vec<String> = hashes
        .columns
        .iter()
        .map(|c| format!("t.\"{c}\""))
        .collect();
    let sql = format!(
        "SELECT hash_record_extended(ROW({}), 0) FROM public.unified_profiles t ORDER BY 1",
        row.join(", ")
    );
    let now = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get(0)).collect::<Vec<i64>>();
    let extracted = row_hashes(&path);
    assert_eq!(now(fx.client.query(&sql, &[]).await.unwrap()), extracted);
    // An app-owned column leaves every hash as it was; a column the load writes does not.
    fx.client
        .batch_execute("UPDATE public.unified_profiles SET tier = 'premium', updated_at = now()")
        .await
        .unwrap();
    assert_eq!(now(fx.client.query(&sql, &[]).await.unwrap()), extracted);
    fx.client
        .batch_execute(&format!(
            "UPDATE public.unified_profiles SET first_name = 'Roberto' WHERE id = '{}'",
            crate::load_fixture::BOB
        ))
        .await
        .unwrap();
    assert_ne!(now(fx.client.query(&sql, &[]).await.unwrap()), extracted);
}

#[tokio::test]
async fn fingerprints_the_copy_computes_are_postgres_own() {
    // The extract hashes uuid, integer and text columns as it copies them instead of asking the
    // server to read each table again; a load compares them with the server's own fingerprints.
    let url = support::supabase_database("extract_row_sums", true).await;
    let client = support::connect(&url).await;
    client.batch_execute(LEGACY_ROWS).await.unwrap();
    client
        .batch_execute(
            r#"
            INSERT INTO public.xendit ("Invoice ID", "Amount", "Customer Name", "Customer Email")
              SELECT 'inv_' || n, n * 1000 - 5000000, 'Ma. Luisa Peñaflor ' || n,
                     CASE WHEN n % 7 = 0 THEN NULL ELSE 'luisa' || n || '@example.com' END
              FROM generate_series(1, 3000) n;
            INSERT INTO public.xendit ("Invoice ID", "Amount") VALUES
              ('min', -9223372036854775808), ('max', 9223372036854775807), ('', 0);
            INSERT INTO public.systemeio ("Email", "Tag")
              SELECT 'contact' || n || '@example.com', repeat('PaidP2P,', n % 5) FROM generate_series(1, 2000) n;
            CREATE TABLE public.by_uuid (id uuid PRIMARY KEY,
              profile_id uuid REFERENCES public.unified_profiles (id), note text);
            INSERT INTO public.by_uuid (id, note)
              SELECT gen_random_uuid(), 'row ' || n FROM generate_series(1, 5000) n;
            INSERT INTO public.by_uuid (id) VALUES ('00000000-0000-0000-0000-000000000000'),
              ('ffffffff-ffff-ffff-ffff-ffffffffffff');
            CREATE TABLE public.by_ints (small int2, medium int4, big int8,
              profile_id uuid REFERENCES public.unified_profiles (id),
              PRIMARY KEY (big, medium, small));
            INSERT INTO public.by_ints (small, medium, big)
              SELECT (n % 65536 - 32768)::int2, n * 7919 - 2147483647, n * 3037000493 - 9223372036854775807
              FROM generate_series(0, 4000) n;
            INSERT INTO public.by_ints (small, medium, big)
              VALUES (32767, 2147483647, 9223372036854775807), (0, 0, 0), (-1, -1, -1),
                     (1, 1, 4294967296), (1, 1, -4294967296);
            -- no primary key: every column is the key, NULLs included
            CREATE TABLE public.no_key (ref uuid, n int8, label varchar(40),
              profile_id uuid REFERENCES public.unified_profiles (id));
            INSERT INTO public.no_key (ref, n, label)
              SELECT CASE WHEN n % 3 = 0 THEN NULL ELSE gen_random_uuid() END,
                     CASE WHEN n % 5 = 0 THEN NULL ELSE n - 1000 END,
                     CASE WHEN n % 4 = 0 THEN NULL ELSE 'ñ' || repeat('x', n % 30) END
              FROM generate_series(1, 3000) n;
            -- a key in a collation that is not deterministic is left to the server
            CREATE COLLATION case_blind (provider = icu, locale = 'und-u-ks-level2',
              deterministic = false);
            CREATE TABLE public.blind (code text COLLATE case_blind PRIMARY KEY,
              profile_id uuid REFERENCES public.unified_profiles (id));
            INSERT INTO public.blind (code) VALUES ('a'), ('B'), ('ç');
            "#,
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO auth.users (id, email, aud, role)
               SELECT gen_random_uuid(), 'user' || n || '@example.com', 'authenticated', 'authenticated'
               FROM generate_series(1, 50) n;
             INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, id)
               SELECT u.id::text, u.id, jsonb_build_object('sub', u.id::text), 'email', gen_random_uuid()
               FROM auth.users u;",
        )
        .await
        .unwrap();
    let dir = extracted(&url).await;
    let manifest = cleanmig::artifacts::Manifest::read(&dir.path().join("extract")).unwrap();
    let mut summed = Vec::new();
    for (qualified, entry) in &manifest.tables {
        let coverage = entry.fingerprint.coverage;
        let columns = cleanmig::pg_arrow::table_columns(&client, qualified)
            .await
            .unwrap();
        let chosen = cleanmig::fingerprint::chosen_columns(
            &columns,
            qualified,
            coverage,
            &entry.key_columns,
        )
        .unwrap();
        if cleanmig::fingerprint::RowSum::covers(&chosen, true) {
            summed.push(qualified.clone());
        }
        let server =
            cleanmig::fingerprint::compute(&client, qualified, coverage, &entry.key_columns)
                .await
                .unwrap();
        assert_eq!(entry.fingerprint, server, "{qualified}");
    }
    for table in [
        "\"public\".\"by_uuid\"",
        "\"public\".\"by_ints\"",
        "\"public\".\"no_key\"",
        "\"public\".\"systemeio\"",
        "\"public\".\"xendit\"",
        "\"auth\".\"users\"",
        "\"auth\".\"identities\"",
    ] {
        assert!(summed.iter().any(|s| s == table), "{table}: {summed:?}");
    }
    assert!(!summed.iter().any(|s| s == "\"public\".\"blind\""));
    assert_eq!(
        manifest.tables["\"public\".\"no_key\""].key_columns.len(),
        4
    );
}

#[test]
fn a_copy_whose_sink_waits_leaves_the_thread_to_the_other_tasks() {
    // The extract's two connections share one thread, each table's batches going to a Parquet
    // writer on a thread of its own through a channel of two. A writer that falls behind must
    // make its own copy wait, not the thread, or the other connection's copy stops as well.
    // Here the sink's reader drains only once another task on the same thread has run a
    // query: a sink that held the thread would never let that task run.
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = done_tx.send(runtime.block_on(copy_beside_a_query()));
    });
    let (copied, counted, received) = done
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("the copy and the query did not finish: the waiting sink held the thread");
    assert_eq!((copied, counted, received), (200_000, 200_000, 200_000));
}

/// Copy 200,000 rows (seven batches) into a channel of one batch whose reader waits for a
/// query that another task starts once the channel is full; (rows copied, rows the query
/// counted, rows the reader received).
async fn copy_beside_a_query() -> (u64, i64, usize) {
    use cleanmig::pg_arrow::{self, CopyDecoder, Kind};
    let url = support::fresh_database("extract_sink_waits").await;
    let client = support::connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE public.numbers (n int4 NOT NULL);
             INSERT INTO public.numbers SELECT generate_series(1, 200000);",
        )
        .await
        .unwrap();
    let other = support::connect(&url).await;
    let (to_reader, mut batches) = tokio::sync::mpsc::channel::<arrow::array::RecordBatch>(1);
    let (query_ran, wait_for_query) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        wait_for_query.recv().unwrap();
        let mut rows = 0;
        while let Some(batch) = batches.blocking_recv() {
            rows += batch.num_rows();
        }
        rows
    });
    // The query starts once the channel is full, the second batch about to be handed over.
    let (full, when_full) = tokio::sync::oneshot::channel::<()>();
    let query = tokio::spawn(async move {
        when_full.await.unwrap();
        let counted: i64 = other
            .query_one("SELECT count(*) FROM public.numbers", &[])
            .await
            .unwrap()
            .get(0);
        query_ran.send(()).unwrap();
        counted
    });
    let schema = std::sync::Arc::new(Schema::new(vec![pg_arrow::field(
        "n",
        &Kind::Int32,
        "integer",
        false,
    )]));
    let decoder = CopyDecoder::new("public.numbers", schema, vec![Kind::Int32], false);
    let (mut full, mut handed) = (Some(full), 0);
    let copied = pg_arrow::copy_out(
        &client,
        "SELECT n FROM public.numbers",
        decoder,
        |batch, _| {
            handed += 1;
            if handed == 2 {
                full.take().unwrap().send(()).unwrap();
            }
            let to_reader = to_reader.clone();
            async move {
                to_reader
                    .send(batch)
                    .await
                    .map_err(|_| anyhow::anyhow!("the reader stopped"))
            }
        },
    )
    .await
    .unwrap();
    drop(to_reader);
    let counted = query.await.unwrap();
    (
        copied,
        counted,
        tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap(),
    )
}
