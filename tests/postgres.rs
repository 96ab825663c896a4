//! A real, throwaway PostgreSQL cluster for the tests that run the server on PostgreSQL
//! (`--database-url`): `initdb` and `pg_ctl` from the Debian package (`/usr/lib/postgresql/*/bin`),
//! started once per test process on 127.0.0.1 and a free port, its unix socket in its own temp
//! dir, `fsync=off` (a crash of the test machine loses nothing we need). As root, the commands
//! run as the `postgres` user (initdb refuses root). Each test gets its own database
//! (`CREATE DATABASE t_<n>`). A watchdog process stops the cluster when the test process exits.
//! Missing PostgreSQL is a test failure, never a skip (`scripts/test.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Where the state of a test server lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The default: SQLite in `--data-dir`.
    Sqlite,
    /// A fresh database on the test process's PostgreSQL cluster.
    Postgres,
}

impl Backend {
    /// The `update-server serve` flags that select this backend (a new database each call).
    pub fn server_args(self) -> Vec<String> {
        match self {
            Backend::Sqlite => Vec::new(),
            Backend::Postgres => vec!["--database-url".to_owned(), database()],
        }
    }
}

/// The running cluster.
#[derive(Debug)]
pub struct Cluster {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args`, as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e} (install the postgresql package)"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql: install the postgresql package (scripts/test.sh does)")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/initdb: install the postgresql package")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Cluster {
    fn start() -> Self {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("e2e-postgres-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        if is_root() {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:"]).arg(&dir);
            run(chown, "chown the cluster dir");
        }
        let data = dir.join("data");
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb");
        let port = free_port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=300",
            dir.display()
        );
        let mut pg_ctl = as_postgres(&bin.join("pg_ctl"));
        pg_ctl
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-o", &options, "start"]);
        run(pg_ctl, "pg_ctl start");
        // Stops the cluster once this test process is gone, however it ends.
        // It runs as us (a `postgres` user could not `kill -0` a root process), pg_ctl as postgres.
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runuser}{pg_ctl} -D {data} -m immediate stop; rm -rf {dir}",
            pid = std::process::id(),
            runuser = if is_root() { "runuser -u postgres -- " } else { "" },
            pg_ctl = bin.join("pg_ctl").display(),
            data = data.display(),
            dir = dir.display(),
        );
        let mut sh = Command::new("/bin/sh");
        sh.args(["-c", &watchdog])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // Never waited for on purpose: it outlives this process (it is reaped by init).
        #[allow(clippy::zombie_processes)]
        sh.spawn().expect("cluster watchdog");
        Cluster { port, bin, dir }
    }

    /// Runs `sql` as the superuser on database `db`; returns psql's unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
        ])
        .arg("postgres")
        .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]);
        run(psql, &format!("psql {sql}"))
    }

    /// Starts `psql` running `sql` on database `db` as `application_name` (a session a test
    /// holds open while something else happens: a lock, a long transaction); the caller ends it.
    pub fn psql_session(&self, db: &str, application_name: &str, sql: &str) -> std::process::Child {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U"])
            .arg("postgres")
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .env("PGAPPNAME", application_name)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("psql {sql}: cannot run: {e}"))
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The cluster's directory (data, log, socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The test process's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

/// A new, empty database on [`cluster`]; returns its URL.
pub fn database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = cluster();
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    cluster.psql("postgres", &format!("CREATE DATABASE {name}"));
    cluster.url(&name)
}
