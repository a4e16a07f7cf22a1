//! A throw-away PostgreSQL server for tests (Debian's `postgresql` package, installed by
//! `scripts/test.sh`): `initdb` in a temporary directory, `postgres` on a free loopback port,
//! both as the unprivileged `nobody` when the tests run as root (PostgreSQL refuses root).
//! One server per test process ([`shared`]), one fresh database per test
//! ([`Postgres::create_database`]). A small shell keeps the server's PID and waits on its
//! stdin, which is the test process's pipe: when the test process exits, the pipe closes and
//! the shell stops the server by that PID and removes the directory. Included by path in the
//! registry's and the end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

/// Bound on the server's start (initdb included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server; stops when the test process exits.
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    /// The shell holding the server; its stdin closes with this process.
    _guard: Mutex<Child>,
}

/// The server of this test process, started on first use.
pub fn shared() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

/// The directory of Debian's PostgreSQL binaries (the newest installed version), or
/// `STREAMGUARD_PG_BIN`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("STREAMGUARD_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL is not installed: run scripts/test.sh (it installs Debian's postgresql)",
        )
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/postgres: install Debian's postgresql")
        .1
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `(uid, gid)` of `nobody` when running as root (PostgreSQL refuses to run as root).
fn unprivileged() -> Option<(u32, u32)> {
    if output(Command::new("id").arg("-u")) != "0" {
        return None;
    }
    let uid = output(Command::new("id").args(["-u", "nobody"]))
        .parse()
        .unwrap();
    let gid = output(Command::new("id").args(["-g", "nobody"]))
        .parse()
        .unwrap();
    Some((uid, gid))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd.env("LC_ALL", "C").env_remove("PGDATA")
}

impl Postgres {
    /// Starts a new server (most tests want [`shared`]).
    pub fn start() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let bin = bin_dir();
        let user = unprivileged();
        let dir = std::env::temp_dir().join(format!(
            "sg-postgres-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = user {
            output(Command::new("chown").arg(format!("{uid}:{gid}")).arg(&dir));
        }
        let data = dir.join("data");
        output(as_user(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
                .current_dir(&dir),
            user,
        ));
        let port = free_port();
        // The shell waits for its stdin to close (this process ended), then stops the server
        // by its PID and removes the directory.
        let script = r#"
            "$1/postgres" -D "$2/data" -p "$3" -k "$2" -c listen_addresses=127.0.0.1 \
                -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                -c max_connections=400 -c shared_buffers=64MB &
            pid=$!
            read -r _ || true
            kill -INT "$pid"
            wait "$pid"
            rm -rf "$2"
        "#;
        let mut child = as_user(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg("sh")
                .arg(&bin)
                .arg(&dir)
                .arg(port.to_string())
                .current_dir(&dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            user,
        )
        .spawn()
        .expect("start postgres");
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = ready.as_ref() {
                    log.push(line.clone());
                    if line.contains("ready to accept connections") {
                        let _ = tx.send(Ok(()));
                        ready = None;
                    }
                }
            }
            if let Some(tx) = ready {
                let _ = tx.send(Err(log.join("\n")));
            }
        });
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("postgres did not start:\n{log}"),
            Err(_) => panic!("postgres did not start within {START_TIMEOUT:?}"),
        }
        Self {
            port,
            bin,
            _guard: Mutex::new(child),
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL statement in database `db` with `psql`; returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        output(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .args(["-h", "127.0.0.1", "-U", "postgres"])
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-d")
                .arg(db)
                .arg("-c")
                .arg(sql)
                .env("PGCONNECT_TIMEOUT", "10"),
        )
    }

    /// Creates a new empty database; returns its URL.
    pub fn create_database(&self) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }
}

/// Whether `path` names a PostgreSQL database (as the registry's `--db` reads it).
pub fn is_postgres(path: &Path) -> bool {
    path.to_string_lossy().starts_with("postgres")
}
