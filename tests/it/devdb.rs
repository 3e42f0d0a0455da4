//! The throwaway Postgres itself.

use crate::support;

#[tokio::test]
async fn throwaway_cluster_accepts_connections_and_creates_databases() {
    let url = support::fresh_database("devdb").await;
    let client = support::connect(&url).await;
    let row = client
        .query_one("SELECT current_user::text, version()", &[])
        .await
        .unwrap();
    let user: String = row.get(0);
    assert_eq!(user, "postgres");
    let version: String = row.get(1);
    assert!(version.starts_with("PostgreSQL"), "{version}");
}

#[test]
fn dev_db_start_url_stop_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let devdir = dir.path().join("devdb");
    let artifacts = dir.path().join("artifacts");
    let out = support::cleanmig(&artifacts)
        .args(["dev-db", "start", "--dir"])
        .arg(&devdir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started_url = String::from_utf8(out.stdout).unwrap();
    let out = support::cleanmig(&artifacts)
        .args(["dev-db", "url", "--dir"])
        .arg(&devdir)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), started_url);
    assert!(started_url.starts_with("postgresql://postgres@127.0.0.1:"));
    support::cleanmig(&artifacts)
        .args(["dev-db", "stop", "--dir"])
        .arg(&devdir)
        .assert()
        .success();
    assert!(!devdir.exists());
    // Stopped means stopped: a second stop says there is nothing to stop.
    let out = support::cleanmig(&artifacts)
        .args(["dev-db", "stop", "--dir"])
        .arg(&devdir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dev database"));
}
