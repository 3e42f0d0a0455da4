//! Extreme values: each one is an error naming table, column and row, never a panic or a
//! silent NULL, and nothing half-written is left behind.

use crate::support;
use arrow::array::{Array, AsArray, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use cleanmig::pg_arrow::{self, CopyDecoder, Kind};
use std::path::Path;
use std::sync::Arc;

async fn extract(url: &str, artifacts: &Path) -> std::process::Output {
    support::cleanmig(artifacts)
        .arg("extract")
        .env("DATABASE_URL", url)
        .output()
        .expect("run cleanmig extract")
}

fn manifest(artifacts: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(artifacts.join("extract/manifest.json")).unwrap())
        .unwrap()
}

#[tokio::test]
async fn infinite_and_far_dates_stop_the_extract_naming_table_column_and_row() {
    // Regression: `infinity` and years past Arrow's range wrapped, panicked or became garbage.
    let url = support::supabase_database("values_dates", false).await;
    let client = support::connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE public.events (
               id int8 PRIMARY KEY, profile_id uuid REFERENCES public.unified_profiles (id),
               at timestamptz, local_at timestamp, day date);
             INSERT INTO public.events VALUES (7, NULL, '2024-03-05 14:22:01+08', '2024-03-05 14:22:01', '2024-03-05');",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = extract(&url, dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = std::fs::read(dir.path().join("extract/manifest.json")).unwrap();

    for (column, value, expected) in [
        (
            "at",
            "'infinity'",
            "`infinity` cannot be stored in an Arrow timestamp",
        ),
        (
            "local_at",
            "'-infinity'",
            "`-infinity` cannot be stored in an Arrow timestamp",
        ),
        (
            "day",
            "'infinity'",
            "`infinity` cannot be stored in an Arrow date",
        ),
        (
            "at",
            "'294276-12-31 23:59:59+00'",
            "a timestamp after 262142-12-31",
        ),
        (
            "local_at",
            "'262143-01-01 00:00:00'",
            "a timestamp after 262142-12-31",
        ),
        ("day", "'5874897-12-31'", "a date after 262142-12-31"),
    ] {
        client
            .batch_execute(&format!("UPDATE public.events SET {column} = {value}"))
            .await
            .unwrap();
        let out = extract(&url, dir.path()).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{column} = {value}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "\"public\".\"events\": row 1 (id = 7), column {column}: {expected}"
            )),
            "{column} = {value}: {stderr}"
        );
        assert!(stderr.contains("extract again"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        // The last good extract is still the one in place.
        assert_eq!(
            std::fs::read(dir.path().join("extract/manifest.json")).unwrap(),
            good
        );
        client
            .batch_execute(
                "UPDATE public.events SET at = '2024-03-05 14:22:01+08', \
                 local_at = '2024-03-05 14:22:01', day = '2024-03-05'",
            )
            .await
            .unwrap();
    }

    // The last day Arrow can hold extracts and loads back unchanged.
    client
        .batch_execute(
            "UPDATE public.events SET at = '262142-12-31 23:59:59.999999+00', \
             local_at = '262142-12-31 23:59:59.999999', day = '262142-12-31';
             CREATE TABLE public.events_copy (LIKE public.events);",
        )
        .await
        .unwrap();
    let out = extract(&url, dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batches = support::read_parquet(&dir.path().join("extract/events.parquet"));
    let rows = pg_arrow::copy_in(
        &client,
        "public.events_copy",
        &batches[0].schema(),
        batches.into_iter().map(Ok),
    )
    .await
    .unwrap();
    assert_eq!(rows, 1);
    let same: bool = client
        .query_one(
            "SELECT (SELECT (at, local_at, day) FROM events) = (SELECT (at, local_at, day) FROM events_copy)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same);
}

#[tokio::test]
async fn a_timestamp_postgres_would_read_as_infinity_is_not_loaded() {
    // Regression: encoding subtracted the epoch offset unchecked, so an extreme Arrow value
    // wrapped (or became Postgres' infinity).
    let url = support::fresh_database("values_load_dates").await;
    let client = support::connect(&url).await;
    client
        .batch_execute("CREATE TABLE public.events (id int8, at timestamptz)")
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::Int64Array::from(vec![1, 2])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(0), Some(i64::MIN)]).with_timezone("UTC"),
            ),
        ],
    )
    .unwrap();
    let err = pg_arrow::copy_in(&client, "public.events", &schema, [Ok(batch)])
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("public.events: row 2, column at: timestamp -9223372036854775808 µs after 1970 is outside years"),
        "{err}"
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM public.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "nothing of the failed COPY is kept");
}

#[tokio::test]
async fn nan_in_a_declared_numeric_stops_the_extract_and_an_undeclared_one_is_noted_text() {
    // Regression: NaN in numeric(p,s) had no Decimal encoding; ±Infinity in an undeclared
    // numeric was written as text but could not be loaded back.
    let url = support::supabase_database("values_nan", false).await;
    let client = support::connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE public.amounts (
               id int8 PRIMARY KEY, profile_id uuid REFERENCES public.unified_profiles (id),
               price numeric(12,2), raw numeric);
             INSERT INTO public.amounts VALUES (1, NULL, 1.50, 1), (2, NULL, 'NaN', 2);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = extract(&url, dir.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "\"public\".\"amounts\": row 2 (id = 2), column price: `NaN` cannot be stored as DECIMAL(38,2)"
        ),
        "{stderr}"
    );
    assert!(
        !dir.path().join("extract").exists(),
        "nothing half-written is left"
    );

    client
        .batch_execute(
            "UPDATE public.amounts SET price = 2.25 WHERE id = 2;
             INSERT INTO public.amounts VALUES (3, NULL, 0, 'NaN'), (4, NULL, 0, 'Infinity'),
                                               (5, NULL, 0, '-Infinity'), (6, NULL, NULL, NULL);
             CREATE TABLE public.amounts_copy (LIKE public.amounts);",
        )
        .await
        .unwrap();
    let out = extract(&url, dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notes = manifest(dir.path())["artifacts"]["amounts"]["notes"].clone();
    assert!(
        notes.as_array().unwrap().iter().any(|n| n
            == "numeric column raw holds NaN or Infinity, which DECIMAL cannot; written as text"),
        "{notes}"
    );
    let batches = support::read_parquet(&dir.path().join("extract/amounts.parquet"));
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("raw").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        schema.field_with_name("price").unwrap().data_type(),
        &DataType::Decimal128(38, 2)
    );
    pg_arrow::copy_in(
        &client,
        "public.amounts_copy",
        &schema,
        batches.into_iter().map(Ok),
    )
    .await
    .unwrap();
    let differ: i64 = client
        .query_one(
            "SELECT count(*) FROM ((TABLE amounts EXCEPT ALL TABLE amounts_copy) \
             UNION ALL (TABLE amounts_copy EXCEPT ALL TABLE amounts)) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(differ, 0, "NaN and ±Infinity come back as they were");
}

#[tokio::test]
async fn large_values_are_read_in_batches_under_the_byte_cap() {
    // Regression: 8,192 rows per batch whatever their size overflowed the 2 GiB a text column
    // of one batch can hold (50 MB jsonb rows). 20 values of 4 MiB: 8,192 of them would be
    // 32 GiB; the default cap of 64 MiB ends a batch after 16.
    let url = support::fresh_database("values_large").await;
    let client = support::connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE public.documents (id int4 PRIMARY KEY, body text);
             ALTER TABLE public.documents ALTER body SET STORAGE EXTERNAL;
             INSERT INTO public.documents
             SELECT g, repeat(chr(96 + g), 4 << 20) FROM generate_series(1, 20) g;",
        )
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        pg_arrow::field("id", &Kind::Int32, "integer", false),
        pg_arrow::field("body", &Kind::Text, "text", true),
    ]));
    let read = |decoder: CopyDecoder| {
        let client = &client;
        async move {
            let mut batches: Vec<(usize, usize)> = Vec::new();
            let mut ok = true;
            let rows = pg_arrow::copy_out(
                client,
                "SELECT id, body FROM public.documents ORDER BY id",
                decoder,
                |batch, _| {
                    let body = batch.column(1).as_string::<i32>();
                    for i in 0..body.len() {
                        let expected = char::from(
                            96 + batch
                                .column(0)
                                .as_primitive::<arrow::datatypes::Int32Type>()
                                .value(i) as u8,
                        );
                        ok &= body.value(i).len() == 4 << 20
                            && body.value(i).chars().all(|c| c == expected);
                    }
                    batches.push((batch.num_rows(), body.value_data().len()));
                    std::future::ready(Ok(()))
                },
            )
            .await
            .unwrap();
            assert!(ok, "every value arrives whole");
            (rows, batches)
        }
    };

    let decoder = CopyDecoder::new(
        "public.documents",
        schema.clone(),
        vec![Kind::Int32, Kind::Text],
        false,
    );
    let (rows, batches) = read(decoder).await;
    assert_eq!(rows, 20);
    assert_eq!(
        batches.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        vec![&15, &5],
        "a batch ends before the row that would take it past 64 MiB"
    );
    assert!(batches
        .iter()
        .all(|(_, bytes)| *bytes <= pg_arrow::BATCH_BYTES));

    let decoder = CopyDecoder::new(
        "public.documents",
        schema,
        vec![Kind::Int32, Kind::Text],
        false,
    )
    .with_batch_bytes(10 << 20);
    let (rows, batches) = read(decoder).await;
    assert_eq!(rows, 20);
    assert_eq!(batches.len(), 10, "{batches:?}");
    assert!(batches.iter().all(|(_, bytes)| *bytes <= 10 << 20));
}

#[test]
fn a_staged_value_that_does_not_convert_stops_the_transform() {
    // Regression: arrow's cast turned 'abc' for a smallint column into a silent NULL.
    let dir = crate::transform::fixture_artifacts();
    let pipeline = dir.path().join("pipeline");
    crate::transform::copy_dir(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pipeline")
            .as_path(),
        &pipeline,
    );
    let sql_path = pipeline.join("transform/07_auth_users.sql");
    let sql = std::fs::read_to_string(&sql_path).unwrap();
    let planted = sql.replace(
        "CAST(0 AS SMALLINT) AS email_change_confirm_status",
        "'abc' AS email_change_confirm_status",
    );
    assert_ne!(
        sql, planted,
        "the fixture SQL changed; plant the value elsewhere"
    );
    std::fs::write(&sql_path, planted).unwrap();
    let out = support::cleanmig(dir.path())
        .env("CLEANMIG_PIPELINE", &pipeline)
        .arg("transform")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "transform must fail: {stderr}");
    assert!(
        stderr.contains(
            "07_auth_users.sql: output `auth_users`, column `email_change_confirm_status`, the row with id '"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("value 'abc' (Utf8) does not convert to Int16"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("stage/manifest.json").exists(),
        "no stage that could be approved is written"
    );
}
