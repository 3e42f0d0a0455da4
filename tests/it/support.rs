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
    {
        // Roles are the cluster's: two tests altering one role at once fail with "tuple
        // concurrently updated", so the tests of this process take turns.
        static ROLES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = ROLES.lock().await;
        admin
            .batch_execute(SUPABASE_ROLES_SQL)
            .await
            .unwrap_or_else(|e| panic!("supabase roles: {e:?}"));
    }
    for (what, sql) in [
        ("auth schema", SUPABASE_AUTH_SQL),
        ("grants", SUPABASE_GRANTS_SQL),
    ] {
        admin
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("supabase {what}: {e:?}"));
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

/// Fill `url` with the demo data at scale 1 (seed 42, legacy source shape if asked), writing
/// its ground truth to `truth`, then run `extract` and `transform` into `artifacts`.
pub fn demo_extract_transform(
    artifacts: &std::path::Path,
    url: &str,
    truth: &std::path::Path,
    legacy: bool,
) {
    demo_extract_transform_at(artifacts, url, truth, legacy, "1")
}

/// [`demo_extract_transform`] at another scale of the demo data.
pub fn demo_extract_transform_at(
    artifacts: &std::path::Path,
    url: &str,
    truth: &std::path::Path,
    legacy: bool,
    scale: &str,
) {
    let mut demo = cleanmig(artifacts);
    demo.args([
        "demo-data",
        "--scale",
        scale,
        "--seed",
        "42",
        "--ground-truth",
    ])
    .arg(truth)
    .env("DATABASE_URL", url);
    if legacy {
        demo.arg("--legacy");
    }
    let out = demo.output().unwrap();
    assert!(
        out.status.success(),
        "demo-data: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in ["extract", "transform"] {
        let out = cleanmig(artifacts)
            .arg(step)
            .env("DATABASE_URL", url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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

/// How the test PgBouncer hands out server connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per transaction (Supabase's transaction pooler, port 6543).
    Transaction,
    /// A server connection per client session (Supabase's session pooler, port 5432).
    Session,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::Session => "session",
        }
    }
}

/// The password clients give the test PgBouncer (SCRAM, from its userlist): the tool must never
/// print it.
pub const POOLER_PASSWORD: &str = "pooler-Secret-4f1d";

/// A real PgBouncer in front of the shared cluster, for one database, with a small pool (two
/// server connections) so that the tool's connections share server connections. Stopped on
/// drop, and by a watchdog if this process dies without dropping it.
pub struct PgBouncer {
    child: std::process::Child,
    port: u16,
    dbname: String,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Start PgBouncer in `mode` for database `dbname` of the shared cluster.
    pub fn start(dbname: &str, mode: PoolMode) -> Self {
        use std::os::unix::process::CommandExt;
        let binary = pgbouncer_binary();
        let cluster = cluster();
        let dir = tempfile::Builder::new()
            .prefix("cleanmig-pgbouncer-")
            .tempdir()
            .expect("temporary directory for PgBouncer");
        let port = free_port();
        let ini = format!(
            "[databases]\n\
             {db} = host=127.0.0.1 port={server} dbname={db}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = {mode}\n\
             default_pool_size = 2\n\
             max_client_conn = 100\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            db = quote_ini(dbname),
            server = cluster.port(),
            dir = dir.path().display(),
            mode = mode.as_str(),
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"postgres\" \"{POOLER_PASSWORD}\"\n"),
        )
        .expect("write userlist.txt");
        let run_as = cleanmig::tools::devdb::postgres_user_if_root().expect("postgres user");
        let mut cmd = std::process::Command::new(&binary);
        cmd.arg(dir.path().join("pgbouncer.ini"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some((uid, gid)) = run_as {
            // PgBouncer refuses to run as root, like Postgres.
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                std::os::unix::fs::chown(entry.unwrap().path(), Some(uid), Some(gid)).unwrap();
            }
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let bouncer = Self {
            child,
            port,
            dbname: dbname.to_string(),
            dir,
        };
        bouncer.spawn_watchdog();
        bouncer.wait_until_listening();
        bouncer
    }

    /// The URL a user would copy from Supabase's dashboard: user, password, pooler port.
    pub fn url(&self) -> String {
        format!(
            "postgresql://postgres:{POOLER_PASSWORD}@127.0.0.1:{}/{}?sslmode=disable",
            self.port, self.dbname
        )
    }

    /// PgBouncer's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    fn wait_until_listening(&self) {
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "PgBouncer did not listen on port {}; its log:\n{}",
            self.port,
            self.log()
        );
    }

    /// Kill PgBouncer when this process dies without dropping it (the pid file is gone after a
    /// clean drop, which removes the directory).
    fn spawn_watchdog(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             [ -d '{dir}' ] && kill -KILL {child} 2>/dev/null; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.path().display(),
            child = self.child.id(),
        );
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            // It outlives this process on purpose: never waited for.
            .map(drop)
            .expect("start the PgBouncer watchdog");
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PgBouncer's binary: `CLEANMIG_PGBOUNCER`, Debian's `/usr/sbin/pgbouncer`, or `PATH`.
/// Missing, the test fails: it never skips.
fn pgbouncer_binary() -> std::path::PathBuf {
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CLEANMIG_PGBOUNCER") {
        candidates.push(p.into());
    }
    candidates.push("/usr/sbin/pgbouncer".into());
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("pgbouncer")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "PgBouncer is not installed (no /usr/sbin/pgbouncer, none in PATH, CLEANMIG_PGBOUNCER unset); \
                 run `make setup` (it installs Debian's pgbouncer package) or set CLEANMIG_PGBOUNCER to its binary"
            )
        })
}

fn quote_ini(name: &str) -> String {
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "test database names are plain: {name}"
    );
    name.to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The database name in a URL made by [`fresh_database`].
pub fn database_name(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split('?').next().unwrap_or_default().to_string()
}
