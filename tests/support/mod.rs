//! Shared harness for the end-to-end tests: an isolated native stack per test (own data dir, own ports), torn
//! down on drop. Nothing here skips: if a service cannot start, the test fails with the stack's logs.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("LEDGERSTREAM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ledgerstream"))
}

pub fn venv_python() -> PathBuf {
    cache_dir().join("venv/bin/python")
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests that start their servers at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One native stack: PostgreSQL + tansu + Kafka Connect/Debezium, on private ports under a temp dir.
pub struct Stack {
    pub dir: PathBuf,
    pub pg_port: u16,
    pub kafka_port: u16,
    pub partitions: u32,
    /// Keep the stack dir after the test for debugging (LS_KEEP_STACK=1).
    keep: bool,
}

impl Stack {
    pub fn start(name: &str, partitions: u32) -> Stack {
        let dir = std::env::temp_dir().join(format!("ls-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("stack dir");
        let stack = Stack {
            dir,
            pg_port: free_port(),
            kafka_port: free_port(),
            partitions,
            keep: std::env::var_os("LS_KEEP_STACK").is_some(),
        };
        let out = stack.script(&["up"]);
        if !out.status.success() {
            let logs = stack.script(&["logs"]);
            panic!(
                "stack up failed ({}):\n{}\n{}\n--- logs\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr),
            );
        }
        stack
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(repo_root().join("stack/stack.sh"))
            .args(args)
            .env("LS_STACK_DIR", &self.dir)
            .env("LS_PG_PORT", self.pg_port.to_string())
            .env("LS_KAFKA_PORT", self.kafka_port.to_string())
            .env("LS_PARTITIONS", self.partitions.to_string())
            .output()
            .expect("run stack/stack.sh")
    }

    /// Runs a stack.sh subcommand and asserts it succeeded.
    pub fn run(&self, args: &[&str]) -> String {
        check(self.script(args), &format!("stack.sh {}", args.join(" ")))
    }

    pub fn pg_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/fintech", self.pg_port)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// Runs SQL through psql against the source database and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.pg_url(), "-c", sql])
            .output()
            .expect("psql");
        check(out, &format!("psql {sql}"))
    }

    pub fn psql_file(&self, path: &Path) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &self.pg_url(), "-f"])
            .arg(path)
            .output()
            .expect("psql");
        check(out, &format!("psql -f {}", path.display()))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The ledgerstream binary built for these tests.
pub fn ledgerstream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ledgerstream"))
}

pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    check(cmd.output().expect(what), what)
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
