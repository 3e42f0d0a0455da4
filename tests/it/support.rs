//! Test harness: one throwaway Postgres cluster per test process, one fresh database per test.

#![allow(dead_code)]

use cleanmig::tools::devdb::Cluster;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use tokio_postgres::{Client, NoTls};

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The shared cluster; started on first use, stopped by its watchdog when the process exits.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| Cluster::start_temporary().expect("start a throwaway Postgres"))
}

/// A new, empty database on the shared cluster; returns its URL.
pub async fn fresh_database(prefix: &str) -> String {
    let cluster = cluster();
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let admin = connect(&cluster.url()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    cluster.url_for(&name)
}

/// Connect without TLS and drive the connection in the background.
pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The `cleanmig` binary with an artifacts directory and the repository's pipeline.
pub fn cleanmig(artifacts: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("cleanmig").expect("cleanmig binary");
    cmd.env_remove("DATABASE_URL")
        .env("CLEANMIG_ARTIFACTS", artifacts)
        .env(
            "CLEANMIG_PIPELINE",
            concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline"),
        );
    cmd
}

/// Schema fixtures: what production looks like.
pub const SUPABASE_ROLES_SQL: &str = include_str!("../fixtures/schema/supabase_roles.sql");
pub const SUPABASE_AUTH_SQL: &str = include_str!("../fixtures/schema/supabase_auth.sql");
pub const SUPABASE_GRANTS_SQL: &str = include_str!("../fixtures/schema/supabase_grants.sql");
pub const SUPABASE_SQL: &str = include_str!("../fixtures/schema/supabase.sql");

/// The role the tool runs as in the tests, as on hosted Supabase: not a superuser, owner of
/// the `public` tables, reader and writer (not owner) of the `auth` tables.
pub const APP_ROLE: &str = "app_owner";

/// The same database, logged in as [`APP_ROLE`].
pub fn as_app_role(url: &str) -> String {
    url.replacen("://postgres@", &format!("://{APP_ROLE}@"), 1)
}

/// The same database, logged in as the cluster's superuser (for what only Supabase itself may
/// do: set-up, and checks that look over every role's shoulder).
pub fn as_superuser(url: &str) -> String {
    url.replacen(&format!("://{APP_ROLE}@"), "://postgres@", 1)
}
pub const SOURCES_CANONICAL_SQL: &str = include_str!("../fixtures/schema/sources_canonical.sql");
pub const SOURCES_LEGACY_SQL: &str = include_str!("../fixtures/schema/sources_legacy.sql");

/// A fresh database shaped like a hosted Supabase project (roles, owners, privileges, the Data
/// API's default grants) with empty source tables in one shape. Returns the URL of
/// [`APP_ROLE`], the role the tool runs as.
pub async fn supabase_database(prefix: &str, legacy: bool) -> String {
    let admin_url = fresh_database(prefix).await;
    let admin = connect(&admin_url).await;
    for (what, sql) in [
        ("roles", SUPABASE_ROLES_SQL),
        ("auth schema", SUPABASE_AUTH_SQL),
        ("grants", SUPABASE_GRANTS_SQL),
    ] {
        admin
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("supabase {what}: {e}"));
    }
    let url = as_app_role(&admin_url);
    let client = connect(&url).await;
    client
        .batch_execute(SUPABASE_SQL)
        .await
        .expect("supabase schema");
    let sources = if legacy {
        SOURCES_LEGACY_SQL
    } else {
        SOURCES_CANONICAL_SQL
    };
    client.batch_execute(sources).await.expect("source tables");
    url
}

/// Read every batch of a Parquet file.
pub fn read_parquet(path: &std::path::Path) -> Vec<arrow::record_batch::RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet footer")
        .build()
        .expect("parquet reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("parquet batches")
}

/// A Parquet file rendered as a table (for comparisons and snapshots).
pub fn parquet_as_text(path: &std::path::Path) -> String {
    arrow::util::pretty::pretty_format_batches(&read_parquet(path))
        .expect("pretty print")
        .to_string()
}
