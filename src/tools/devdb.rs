//! A throwaway Postgres cluster: `initdb` into a private directory, started on a free port with a
//! private socket directory, run as the `postgres` user when the caller is root, stopped and
//! removed when done (also after a panic, Ctrl-C or a kill, through a watchdog process).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running cluster. A temporary one is stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    bindir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    temporary: bool,
    stopped: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    port: u16,
    bindir: PathBuf,
    url: String,
}

const STATE_FILE: &str = "cleanmig-devdb.json";

impl Cluster {
    /// Start a cluster in a new temporary directory; it goes away with this value or this process.
    pub fn start_temporary() -> Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("cleanmig-pg-")
            .tempdir()
            .context("cannot create a temporary directory for Postgres")?
            .keep();
        let cluster = Self::init_and_start(&root, true)?;
        cluster.spawn_watchdog()?;
        Ok(cluster)
    }

    /// Start a long-lived cluster in `dir` (for `cleanmig dev-db start`).
    pub fn start_in(dir: &Path) -> Result<Self> {
        if dir.join(STATE_FILE).exists() {
            bail!(
                "a dev database already runs in {} (`cleanmig dev-db url` prints its URL, `cleanmig dev-db stop` removes it)",
                dir.display()
            );
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let root = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let cluster = Self::init_and_start(&root, false)?;
        let state = State {
            port: cluster.port,
            bindir: cluster.bindir.clone(),
            url: cluster.url(),
        };
        crate::artifacts::write_json(&root.join(STATE_FILE), &state)?;
        Ok(cluster)
    }

    fn init_and_start(root: &Path, temporary: bool) -> Result<Self> {
        let bindir = find_bindir()?;
        let run_as = postgres_user_if_root()?;
        let data = root.join("data");
        let sock = root.join("sock");
        fs::create_dir_all(&sock)?;
        if let Some((uid, gid)) = run_as {
            chown_tree(root, uid, gid)?;
        }
        let mut cluster = Self {
            root: root.to_path_buf(),
            bindir,
            port: 0,
            run_as,
            temporary,
            stopped: true,
        };
        cluster
            .run(
                "initdb",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "--auth=trust".as_ref(),
                    "--encoding=UTF8".as_ref(),
                    "--no-locale".as_ref(),
                    "--no-sync".as_ref(),
                ],
            )
            .context("initdb failed")?;
        let mut last_err = None;
        for _ in 0..3 {
            cluster.port = free_port()?;
            let opts = format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                cluster.port,
                sock.display()
            );
            let log = root.join("postgres.log");
            match cluster.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    opts.as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "start".as_ref(),
                ],
            ) {
                Ok(()) => {
                    cluster.stopped = false;
                    tracing::debug!(
                        "started Postgres on port {} in {}",
                        cluster.port,
                        root.display()
                    );
                    return Ok(cluster);
                }
                Err(e) => {
                    let tail = fs::read_to_string(&log).unwrap_or_default();
                    last_err = Some(e.context(format!("pg_ctl start failed; server log:\n{tail}")));
                }
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// Stop the server when this process dies, however it dies. The watchdog runs as the
    /// caller (it must be able to see this process) and stops the server with SIGQUIT
    /// (immediate shutdown), which root may send to the postgres user's server.
    fn spawn_watchdog(&self) -> Result<()> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             kill -QUIT \"$(head -1 '{data}/postmaster.pid' 2>/dev/null)\" 2>/dev/null; \
             sleep 1; rm -rf '{root}'",
            pid = std::process::id(),
            data = self.root.join("data").display(),
            root = self.root.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the Postgres watchdog")?;
        Ok(())
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
        let mut cmd = Command::new(self.bindir.join(tool));
        cmd.args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", self.bindir.join(tool).display()))?;
        if !out.status.success() {
            bail!(
                "{tool} exited with {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// URL of another database on this cluster.
    pub fn url_for(&self, dbname: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.port
        )
    }

    /// Stop the server (and remove a temporary cluster's files).
    pub fn stop(&mut self) -> Result<()> {
        if !self.stopped {
            let data = self.root.join("data");
            self.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "fast".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            )?;
            self.stopped = true;
        }
        if self.temporary {
            let _ = fs::remove_dir_all(&self.root);
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.temporary {
            if let Err(e) = self.stop() {
                eprintln!("warning: could not stop the throwaway Postgres: {e:#}");
            }
        }
    }
}

/// Find `initdb` and `pg_ctl`: `CLEANMIG_PG_BINDIR`, `PATH`, `pg_config --bindir`,
/// `/usr/lib/postgresql/*/bin` (newest first).
pub fn find_bindir() -> Result<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CLEANMIG_PG_BINDIR") {
        candidates.push(dir.into());
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    candidates.extend(versioned.into_iter().map(|(_, p)| p));
    for dir in candidates {
        if has_tools(&dir) {
            // Resolve symlinks such as /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb,
            // so that initdb finds the server binaries beside it.
            let real = dir.join("initdb").canonicalize().ok();
            return Ok(real
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .filter(|d| has_tools(d))
                .unwrap_or(dir));
        }
    }
    bail!(
        "no Postgres server binaries found (initdb, pg_ctl) in PATH, `pg_config --bindir` or /usr/lib/postgresql/*/bin. \
         On Debian or Ubuntu: `apt-get install postgresql`; on macOS: `brew install postgresql`; \
         or set CLEANMIG_PG_BINDIR to the directory that holds initdb"
    )
}

/// Postgres refuses to run as root: when we are root, run it as `postgres` (its uid and gid;
/// `None` when we are not root). The test harness runs PgBouncer the same way.
pub fn postgres_user_if_root() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns a pointer to static storage or NULL; read before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("running as root, and there is no `postgres` user to run the server as (Postgres refuses to run as root); create one, e.g. `useradd --system postgres`, or install Debian's postgresql package");
    }
    // SAFETY: pw is non-null and points to a valid passwd struct.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("cannot hand {} to the postgres user", path.display()))?;
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// What `cleanmig dev-db` does, with the cluster's directory.
#[derive(Debug, Clone)]
pub enum Action {
    Start(PathBuf),
    Stop(PathBuf),
    Url(PathBuf),
}

/// `cleanmig dev-db start|stop|url`.
pub async fn command(action: Action) -> Result<()> {
    match action {
        Action::Start(dir) => {
            let cluster = tokio::task::spawn_blocking(move || Cluster::start_in(&dir)).await??;
            tracing::info!(
                "dev-db: Postgres running on port {}; stop it with `cleanmig dev-db stop`",
                cluster.port
            );
            println!("{}", cluster.url());
            Ok(())
        }
        Action::Url(dir) => {
            let state = read_state(&dir)?;
            println!("{}", state.url);
            Ok(())
        }
        Action::Stop(dir) => {
            let state = read_state(&dir)?;
            let root = dir.canonicalize()?;
            let mut cluster = Cluster {
                run_as: postgres_user_if_root()?,
                root: root.clone(),
                bindir: state.bindir,
                port: state.port,
                temporary: false,
                stopped: false,
            };
            let stopped = cluster.stop();
            fs::remove_dir_all(&root)
                .with_context(|| format!("cannot remove {}", root.display()))?;
            stopped?;
            tracing::info!("dev-db: stopped and removed {}", dir.display());
            Ok(())
        }
    }
}

fn read_state(dir: &Path) -> Result<State> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        bail!(
            "no dev database in {} (start one with `cleanmig dev-db start`)",
            dir.display()
        );
    }
    crate::artifacts::read_json(&path)
}
