//! TLS the way libpq's sslmode says, against a real server with its own certificate authority.

use crate::support;
use cleanmig::connect::ConnInfo;
use cleanmig::tools::devdb::Cluster;
use std::path::Path;
use std::process::Command;

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

async fn uses_tls(url: &str) -> anyhow::Result<bool> {
    let client = ConnInfo::resolve(Some(url))?.connect().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn sslmode_disable_prefer_require_verify_ca_and_verify_full_behave_like_libpq() {
    let cluster = Cluster::start_temporary().expect("cluster");
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    give_to_server(dir.path());
    let admin = support::connect(&cluster.url()).await;
    let d = dir.path().display();
    for sql in [
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
    let base = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let ca = dir.path().join("ca.crt");
    let other = dir.path().join("other.crt");

    assert!(!uses_tls(&format!("{base}?sslmode=disable")).await.unwrap());
    assert!(uses_tls(&format!("{base}?sslmode=prefer")).await.unwrap());
    assert!(uses_tls(&base).await.unwrap(), "prefer is the default");
    assert!(
        uses_tls(&format!("{base}?sslmode=require")).await.unwrap(),
        "require does not check the certificate"
    );
    assert!(uses_tls(&format!(
        "{base}?sslmode=verify-ca&sslrootcert={}",
        ca.display()
    ))
    .await
    .unwrap());
    assert!(uses_tls(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .await
    .unwrap());

    // A certificate from an authority we were not told to trust is refused, and the error says so.
    let err = uses_tls(&format!("{base}?sslmode=verify-full"))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("cannot connect to postgresql://postgres@127.0.0.1"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
    let err = uses_tls(&format!(
        "{base}?sslmode=verify-ca&sslrootcert={}",
        other.display()
    ))
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );

    // verify-ca checks the chain only: a host name the certificate does not name still connects;
    // verify-full refuses it.
    let by_name = format!(
        "postgresql://postgres@localhost:{}/postgres",
        cluster.port()
    );
    let ca_only = uses_tls(&format!(
        "{by_name}?sslmode=verify-ca&sslrootcert={}",
        ca.display()
    ))
    .await;
    assert!(ca_only.unwrap(), "verify-ca ignores the host name");
    let full = uses_tls(&format!(
        "{by_name}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .await;
    let msg = format!("{:#}", full.unwrap_err());
    assert!(
        msg.to_lowercase().contains("certificate"),
        "verify-full checks the host name: {msg}"
    );
}
