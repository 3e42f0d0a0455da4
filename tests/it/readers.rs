//! Every Parquet artifact opens in DuckDB and pyarrow, not only in DataFusion.

use crate::support;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python with duckdb and pyarrow that `make setup` puts in target/pyenv-readers. A test
/// never installs anything: without it the test fails and says how to make it.
fn python_with_readers() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv-readers");
    let python = venv.join("bin/python");
    let check = Command::new(&python)
        .args(["-c", "import duckdb, pyarrow"])
        .output();
    match check {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} cannot import duckdb and pyarrow ({}); run `make setup` to create it",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "no Python environment for the reader tests at {} ({e}); run `make setup` to create it",
            venv.display()
        ),
    }
}

const CHECK: &str = r#"
import sys, glob, duckdb, pyarrow.parquet as pq
files = sorted(glob.glob(sys.argv[1] + '/**/*.parquet', recursive=True))
assert files, 'no parquet files'
con = duckdb.connect()
for f in files:
    table = pq.read_table(f)
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{f}')").fetchall()[0][0]
    full = con.execute(f"SELECT * FROM read_parquet('{f}')").fetchall()
    assert rows == table.num_rows == len(full), (f, rows, table.num_rows)
    print(f.split('/')[-1], table.num_rows)
print(con.execute(f"SELECT amount, paid_at FROM read_parquet('{sys.argv[1]}/extract/transactions.parquet')").fetchall())
"#;

#[tokio::test]
async fn duckdb_and_pyarrow_read_every_artifact() {
    let python = python_with_readers();
    let url = support::supabase_database("readers", true).await;
    support::connect(&url)
        .await
        .batch_execute(
            "INSERT INTO auth.users (id, email, created_at) VALUES ('00000000-0000-0000-0000-0000000000aa', 'ana@example.com', now());
             INSERT INTO unified_profiles (id, email, tags) VALUES ('00000000-0000-0000-0000-0000000000aa', 'ana@example.com', '{PaidP2P,ñ}');
             INSERT INTO transactions (user_id, amount, metadata, paid_at)
               VALUES ('00000000-0000-0000-0000-0000000000aa', -1234567890.125, '{\"a\": \"ñ\"}', '2024-03-05 14:22:01+08');
             INSERT INTO xendit (\"External ID\", \"Status\", \"Description\", \"Amount\", \"Customer Email\")
               VALUES ('p2p-1', 'PAID', 'Papers to Profits', 1000, 'Ana@Example.com');",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = support::cleanmig(dir.path())
        .arg("extract")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(python)
        .arg("-c")
        .arg(CHECK)
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("transactions.parquet 1"), "{stdout}");
    assert!(stdout.contains("Decimal('-1234567890.125')"), "{stdout}");
    assert!(
        stdout.contains("2024, 3, 5, 6, 22, 1"),
        "timestamps are UTC: {stdout}"
    );
}
