//! TLS the way libpq's sslmode says, against a real server with its own certificate authority.

use crate::support;
use cleanmig::connect::ConnInfo;
use cleanmig::tools::devdb::Cluster;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cleanmig test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
    // Another CA, which did not sign the server's certificate.
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=someone else",
            "-keyout",
            "other.key",
            "-out",
            "other.crt",
        ],
    );
}

/// Hand the server's key to the user the server runs as; Postgres insists on 0600.
fn give_to_server(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // SAFETY: geteuid has no preconditions; getpwnam returns static storage or NULL.
    if unsafe { libc::geteuid() } == 0 {
        let name = std::ffi::CString::new("postgres").unwrap();
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        assert!(
            !pw.is_null(),
            "a postgres user exists when tests run as root"
        );
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        for f in ["server.key", "server.crt"] {
            std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).unwrap();
        }
    }
}

/// A throwaway Postgres serving TLS with `server.crt` (signed by `ca.crt`), one per test process.
struct TlsServer {
    cluster: Cluster,
    dir: tempfile::TempDir,
}

impl TlsServer {
    fn base(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres",
            self.cluster.port()
        )
    }
    fn cert(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

static SERVER: OnceLock<TlsServer> = OnceLock::new();

fn tls_server() -> &'static TlsServer {
    SERVER.get_or_init(|| {
        // Set up on a runtime of its own: the tests' runtimes come and go.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(start_tls_server())
        })
        .join()
        .expect("TLS server setup")
    })
}

async fn start_tls_server() -> TlsServer {
    let cluster = Cluster::start_temporary().expect("cluster");
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    give_to_server(dir.path());
    let admin = support::connect(&cluster.url()).await;
    let d = dir.path().display();
    // A role that must log in with SCRAM over TLS, for channel binding.
    let hba: String = admin.query_one("SHOW hba_file", &[]).await.unwrap().get(0);
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("hostssl all binder 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    for sql in [
        "SET password_encryption = 'scram-sha-256'".to_string(),
        "CREATE ROLE binder LOGIN PASSWORD 'bind-secret-42'".to_string(),
        format!("ALTER SYSTEM SET ssl_cert_file = '{d}/server.crt'"),
        format!("ALTER SYSTEM SET ssl_key_file = '{d}/server.key'"),
        "ALTER SYSTEM SET ssl = on".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        admin.simple_query(&sql).await.unwrap();
    }
    // The reload is asynchronous: wait until new sessions see it.
    for _ in 0..50 {
        let on: String = support::connect(&cluster.url())
            .await
            .query_one("SHOW ssl", &[])
            .await
            .unwrap()
            .get(0);
        if on == "on" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    TlsServer { cluster, dir }
}

/// Connect with the process's environment, but `HOME` in an empty folder (no
/// `~/.postgresql/root.crt`) unless `home` says otherwise.
async fn uses_tls_with_home(url: &str, home: Option<&Path>) -> anyhow::Result<bool> {
    let empty = tempfile::tempdir()?;
    let home = home.unwrap_or(empty.path()).display().to_string();
    let info = ConnInfo::resolve_with(Some(url), |k| match k {
        "HOME" => Some(home.clone()),
        "PGSSLROOTCERT" | "PGSSLMODE" => None,
        _ => std::env::var(k).ok(),
    })?;
    let client = info.connect().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

async fn uses_tls(url: &str) -> anyhow::Result<bool> {
    uses_tls_with_home(url, None).await
}

/// The error of a refused connection, with its causes; panics if it connected.
async fn refused(url: &str) -> String {
    match uses_tls(url).await {
        Ok(tls) => panic!("{url} connected (tls: {tls}) but should be refused"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn sslmode_disable_prefer_require_verify_ca_and_verify_full_behave_like_libpq() {
    let server = tls_server();
    let base = server.base();
    let ca = server.cert("ca.crt");

    assert!(!uses_tls(&format!("{base}?sslmode=disable")).await.unwrap());
    assert!(uses_tls(&format!("{base}?sslmode=prefer")).await.unwrap());
    assert!(uses_tls(&base).await.unwrap(), "prefer is the default");
    assert!(
        uses_tls(&format!("{base}?sslmode=require")).await.unwrap(),
        "require without a root file does not check the certificate"
    );
    for mode in ["require", "verify-ca", "verify-full"] {
        assert!(
            uses_tls(&format!("{base}?sslmode={mode}&sslrootcert={ca}"))
                .await
                .unwrap(),
            "{mode} with the CA that signed the server's certificate"
        );
    }

    // verify-ca checks the chain only: a host name the certificate does not name still connects;
    // verify-full refuses it.
    let by_name = format!(
        "postgresql://postgres@localhost:{}/postgres",
        server.cluster.port()
    );
    let ca_only = uses_tls(&format!("{by_name}?sslmode=verify-ca&sslrootcert={ca}")).await;
    assert!(ca_only.unwrap(), "verify-ca ignores the host name");
    let msg = refused(&format!("{by_name}?sslmode=verify-full&sslrootcert={ca}")).await;
    assert!(
        msg.contains("certificate was refused") && msg.contains("with the host name"),
        "verify-full checks the host name: {msg}"
    );
    assert!(msg.contains("not valid for name \"localhost\""), "{msg}");
}

/// Regression: verify-ca used to trust every public CA besides sslrootcert, for any host.
#[tokio::test]
async fn a_certificate_from_another_authority_than_sslrootcert_is_refused() {
    let server = tls_server();
    let base = server.base();
    let other = server.cert("other.crt");
    // libpq: require with a root file checks the chain, as verify-ca does.
    for mode in ["require", "verify-ca", "verify-full"] {
        let msg = refused(&format!("{base}?sslmode={mode}&sslrootcert={other}")).await;
        assert!(
            msg.contains("cannot connect to postgresql://postgres@127.0.0.1"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "the server's certificate was refused (checked against {other}"
            )),
            "{mode}: {msg}"
        );
        assert!(
            msg.contains("check that sslrootcert names the CA"),
            "{mode}: {msg}"
        );
    }
}

#[tokio::test]
async fn without_sslrootcert_verify_modes_need_home_root_crt_as_in_libpq() {
    let server = tls_server();
    let base = server.base();
    for mode in ["verify-ca", "verify-full"] {
        let msg = refused(&format!("{base}?sslmode={mode}")).await;
        assert!(msg.contains(".postgresql/root.crt does not exist"), "{msg}");
        assert!(msg.contains("sslrootcert="), "{msg}");
    }

    // ~/.postgresql/root.crt is the default trust, for verify-* and (libpq) for require.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    let root = home.path().join(".postgresql/root.crt");
    std::fs::copy(server.cert("ca.crt"), &root).unwrap();
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!("{base}?sslmode={mode}");
        assert!(
            uses_tls_with_home(&url, Some(home.path())).await.unwrap(),
            "{mode}"
        );
    }
    std::fs::copy(server.cert("other.crt"), &root).unwrap();
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!("{base}?sslmode={mode}");
        let err = uses_tls_with_home(&url, Some(home.path()))
            .await
            .expect_err("root.crt names another CA");
        assert!(
            format!("{err:#}").to_lowercase().contains("certificate"),
            "{mode}: {err:#}"
        );
    }
}

#[tokio::test]
async fn sslrootcert_system_refuses_a_private_ca() {
    let server = tls_server();
    // The test's own CA is in no system store; sslrootcert=system alone means verify-full.
    let msg = refused(&format!("{}?sslrootcert=system", server.base())).await;
    assert!(msg.contains("sslmode=verify-full"), "{msg}");
    assert!(
        msg.contains("certificate was refused (checked against the system's trusted roots"),
        "{msg}"
    );
    let msg = refused(&format!(
        "{}?sslmode=verify-ca&sslrootcert=system",
        server.base()
    ))
    .await;
    assert!(
        msg.contains("sslmode=verify-ca may not be used with sslrootcert=system"),
        "{msg}"
    );
}

#[tokio::test]
async fn scram_channel_binding_works_over_our_tls() {
    let server = tls_server();
    let url = format!(
        "postgresql://binder:bind-secret-42@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}&channel_binding=require",
        server.cluster.port(),
        server.cert("ca.crt")
    );
    assert!(uses_tls(&url).await.unwrap());
}

/// The real binary says on stderr whether the connection is encrypted, and never the password.
#[test]
fn each_command_logs_tls_or_plaintext() {
    let server = tls_server();
    let artifacts = tempfile::tempdir().unwrap();
    let url = |query: &str| {
        format!(
            "postgresql://postgres:pw-never-shown@127.0.0.1:{}/postgres?{query}",
            server.cluster.port()
        )
    };
    let stderr_of = |url: String| {
        let out = support::cleanmig(artifacts.path())
            .args(["status", "--database-url", &url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!stderr.contains("pw-never-shown"), "{stderr}");
        assert!(!stdout.contains("pw-never-shown"), "{stdout}");
        stderr
    };
    let stderr = stderr_of(url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        server.cert("ca.crt")
    )));
    assert!(
        stderr.contains("connection to postgresql://postgres:***@127.0.0.1:")
            && stderr.contains("TLS (TLS 1."),
        "{stderr}"
    );
    assert!(
        stderr.contains("certificate chain and host name checked"),
        "{stderr}"
    );
    let stderr = stderr_of(url("sslmode=require"));
    assert!(
        stderr.contains("TLS (TLS 1.") && stderr.contains("server certificate NOT checked"),
        "{stderr}"
    );
    let stderr = stderr_of(url("sslmode=disable"));
    assert!(stderr.contains("plaintext (not encrypted)"), "{stderr}");
    assert!(!stderr.contains("TLS ("), "{stderr}");
}
