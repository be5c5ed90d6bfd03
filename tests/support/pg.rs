//! A throwaway PostgreSQL 15 server for integration tests.
//!
//! [`TestPg::start`] runs `initdb` into a fresh temporary directory and starts the server on 127.0.0.1 and a free
//! port above 40000, with `wal_level=logical` (so CDC tests can use it too) and durability off (speed). Dropping
//! the handle stops that server (`pg_ctl stop`, then its postmaster PID if needed) and deletes the directory.
//! It panics with the server log when anything fails: a test that needs PostgreSQL must not silently pass.
//!
//! `initdb` refuses to run as root, so when the tests run as root every PostgreSQL binary is run through
//! `runuser -u postgres --`. The binaries are taken from `$LEDGERSTREAM_PG_BIN`, default
//! `/usr/lib/postgresql/15/bin`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
const START_ATTEMPTS: u32 = 3;

/// A running throwaway server; stopped on drop.
pub struct TestPg {
    /// Owns the temporary directory; deleted after the server stops (fields drop after `Drop::drop`).
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The postmaster's PID, the fallback for stopping it.
    pid: Option<u32>,
    /// Whether commands must run as the `postgres` OS user (we are root).
    as_postgres: bool,
}

impl TestPg {
    /// Starts a server, or panics with the reason.
    pub fn start() -> TestPg {
        let bin = std::env::var_os("LEDGERSTREAM_PG_BIN")
            .map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
        assert!(
            bin.join("initdb").exists(),
            "PostgreSQL binaries not found in {} (set LEDGERSTREAM_PG_BIN)",
            bin.display()
        );
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("ledgerstream-pg-")
            .tempdir()
            .expect("creating a temporary directory for PostgreSQL");
        set_mode(dir.path(), 0o755);
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("creating the data directory");
        if as_postgres {
            run_checked(
                Command::new("chown").arg("postgres:postgres").arg(&data),
                "chown data dir",
            );
        }
        let mut pg = TestPg {
            _dir: dir,
            data,
            bin,
            port: 0,
            pid: None,
            as_postgres,
        };
        let mut initdb = pg.pg_command("initdb");
        let out = pg.run(initdb.arg("-D").arg(&pg.data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]));
        assert!(out.status.success(), "initdb failed:\n{}", describe(&out));

        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let log = pg.data.join("server.log");
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} -c wal_level=logical \
                 -c max_replication_slots=8 -c max_wal_senders=8 -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off",
                pg.data.display()
            );
            let mut ctl = pg.pg_command("pg_ctl");
            let out = pg.run(
                ctl.arg("-D")
                    .arg(&pg.data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-w", "-t", "60", "-o", &opts, "start"]),
            );
            if out.status.success() {
                pg.port = port;
                pg.pid = read_pid(&pg.data);
                return pg;
            }
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            last_failure = format!("{}\nserver log:\n{log_text}", describe(&out));
            if !log_text.contains("could not bind") && !log_text.contains("already in use") {
                break;
            }
        }
        panic!("PostgreSQL did not start:\n{last_failure}");
    }

    /// A URL for the `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// A URL for database `db` of this server.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn pg_command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, cmd: &mut Command) -> Output {
        // A working directory the postgres user can enter.
        cmd.current_dir("/")
            .output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        let mut ctl = self.pg_command("pg_ctl");
        let stopped = self
            .run(
                ctl.arg("-D")
                    .arg(&self.data)
                    .args(["-m", "fast", "-w", "-t", "30", "stop"]),
            )
            .status
            .success();
        if !stopped && let Some(pid) = self.pid {
            // Only ever our own postmaster, by its PID.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed:\n{}", describe(&out));
}

fn describe(out: &Output) -> String {
    format!(
        "status: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port in 40000..60000 that was free a moment ago, starting from a per-process pseudo-random point so that
/// concurrent test binaries rarely race for the same one.
fn free_port() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let offset = (std::process::id().wrapping_mul(7919) ^ nanos) % 20_000;
    for i in 0..20_000u32 {
        let port = 40_000 + ((offset + i) % 20_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 40000..60000");
}

fn read_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}
