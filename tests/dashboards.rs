//! The Grafana dashboards against a live run: native stack (PostgreSQL, tansu, Debezium) + `ledgerstream run` +
//! a real Prometheus (Debian's `prometheus`) scraping the processor on loopback every second.
//!
//! The generator runs with fraud patterns, bad rows and a live ADD COLUMN; the processor is stopped with SIGTERM
//! and started again half-way (a recovery). Then **every PromQL expression in grafana/dashboards/*.json** is run
//! as a range query over the run against that Prometheus, and each must return at least one finite sample: a
//! panel that cannot show anything is a defect.
//!
//! The dashboards' structure is checked without any services: valid JSON, unique panel ids, every datasource
//! provisioned, no Grafana variable the test does not know.

mod support;

use serde::Deserialize;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{PipelineDir, Stack, free_port, repo_root, terminate, wait_for};

/// One query of one panel.
#[derive(Debug)]
struct PanelQuery {
    dashboard: String,
    panel: String,
    expr: String,
}

fn dashboard_files() -> Vec<PathBuf> {
    let dir = repo_root().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("grafana/dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[derive(Deserialize)]
struct Provisioning {
    datasources: Vec<ProvisionedDatasource>,
}

#[derive(Deserialize)]
struct ProvisionedDatasource {
    uid: String,
    #[serde(rename = "type")]
    kind: String,
}

fn provisioned_datasources() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(
        repo_root().join("grafana/provisioning/datasources/datasources.yml"),
    )
    .expect("datasources.yml");
    let p: Provisioning = serde_yaml::from_str(&text).expect("datasources.yml parses");
    p.datasources.into_iter().map(|d| (d.kind, d.uid)).collect()
}

/// Walks one dashboard: checks panel ids and datasources, and collects the Prometheus queries.
fn collect(
    file: &Path,
    datasources: &BTreeSet<(String, String)>,
    out: &mut Vec<PanelQuery>,
) -> usize {
    let text = std::fs::read_to_string(file).expect("dashboard");
    let dash: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let name = dash["title"].as_str().expect("dashboard title").to_string();
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let mut ids = BTreeSet::new();
    let mut panels = 0;
    let mut stack: Vec<&serde_json::Value> =
        dash["panels"].as_array().expect("panels").iter().collect();
    while let Some(panel) = stack.pop() {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        assert!(
            ids.insert(panel["id"].as_i64().expect("panel id")),
            "{name}: duplicate panel id in `{title}`"
        );
        if let Some(children) = panel["panels"].as_array() {
            stack.extend(children);
        }
        if panel["type"] == "row" {
            continue;
        }
        panels += 1;
        let targets = panel["targets"].as_array();
        assert!(
            targets.is_some_and(|t| !t.is_empty()),
            "{name}: panel `{title}` has no queries"
        );
        for target in targets.into_iter().flatten() {
            let ds = if target["datasource"].is_object() {
                &target["datasource"]
            } else {
                &panel["datasource"]
            };
            let key = (
                ds["type"].as_str().unwrap_or_default().to_string(),
                ds["uid"].as_str().unwrap_or_default().to_string(),
            );
            assert!(
                datasources.contains(&key),
                "{name}: panel `{title}` uses datasource {key:?}, which grafana/provisioning does not provide"
            );
            match key.0.as_str() {
                "prometheus" => out.push(PanelQuery {
                    dashboard: name.clone(),
                    panel: title.clone(),
                    expr: target["expr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: `{title}` has no expr"))
                        .to_string(),
                }),
                "tempo" => assert!(
                    target["query"]
                        .as_str()
                        .is_some_and(|q| q.contains("name=\"")),
                    "{name}: Tempo panel `{title}` needs a TraceQL query on span names"
                ),
                other => panic!("{name}: unexpected datasource type {other}"),
            }
        }
    }
    panels
}

fn all_queries() -> Vec<PanelQuery> {
    let datasources = provisioned_datasources();
    let mut queries = Vec::new();
    let files = dashboard_files();
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    // The three dashboards the operators' guide names.
    for want in ["pipeline-health", "business", "traces"] {
        assert!(names.contains(want), "grafana/dashboards/{want}.json");
    }
    for f in &files {
        assert!(
            collect(f, &datasources, &mut queries) > 0,
            "{}",
            f.display()
        );
    }
    queries
}

/// Grafana's built-in variables, as Grafana would resolve them for this run (1 s scrapes).
fn substitute(expr: &str, range_s: u64) -> String {
    let out = expr
        .replace("$__rate_interval", "15s")
        .replace("$__range", &format!("{range_s}s"));
    assert!(
        !out.contains('$'),
        "unknown Grafana variable in `{expr}`: add it to the test's substitutions"
    );
    out
}

#[test]
fn dashboards_are_well_formed() {
    let queries = all_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for q in &queries {
        // Every metric a panel names is defined in src/metrics.rs (the one metrics file).
        let metrics = std::fs::read_to_string(repo_root().join("src/metrics.rs")).expect("metrics");
        for word in q
            .expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("ledgerstream_"))
        {
            let base = word
                .trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum");
            assert!(
                metrics.contains(&format!("\"{base}\"")),
                "{} / {}: `{word}` is not a metric in src/metrics.rs",
                q.dashboard,
                q.panel
            );
        }
        substitute(&q.expr, 60);
    }
}

// ---------------------------------------------------------------------------------------------- live run

/// Minimal HTTP/1.0 GET against a loopback server; returns (status, body).
fn http_get(port: u16, path_and_query: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
struct PromResponse {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<PromData>,
}

#[derive(Deserialize)]
struct PromData {
    result: Vec<PromSeries>,
}

#[derive(Deserialize)]
struct PromSeries {
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Finite samples of a range query.
fn finite_samples(port: u16, expr: &str, start: u64, end: u64) -> Result<usize, String> {
    let path = format!(
        "/api/v1/query_range?query={}&start={start}&end={end}&step=2",
        urlencode(expr)
    );
    let (status, body) = http_get(port, &path).map_err(|e| e.to_string())?;
    let r: PromResponse =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
    if r.status != "success" {
        return Err(format!("{}: {}", r.status, r.error.unwrap_or_default()));
    }
    Ok(r.data
        .map(|d| {
            d.result
                .iter()
                .flat_map(|s| &s.values)
                .filter(|(_, v)| v.parse::<f64>().is_ok_and(f64::is_finite))
                .count()
        })
        .unwrap_or(0))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Debian's Prometheus on loopback with 1 s scrapes of one target; killed on drop.
struct Prometheus {
    port: u16,
    child: std::process::Child,
    dir: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16) -> Prometheus {
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: ledgerstream\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .expect("prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect(
                "start prometheus (Debian package `prometheus`, installed by stack/bootstrap.sh)",
            );
        let p = Prometheus { port, child, dir };
        let ready = wait_for(Duration::from_secs(60), || {
            http_get(port, "/-/ready")
                .ok()
                .filter(|(s, _)| *s == 200)
                .map(|_| ())
        });
        assert!(ready.is_some(), "prometheus not ready:\n{}", p.log());
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_dashboard_query_returns_data_from_a_live_run() {
    let queries = all_queries();
    let stack = Stack::start("dashboards", 2);
    let p = PipelineDir::new("dashboards", &stack.brokers(), "fintech", "1s");
    let metrics_port = free_port();
    let config = std::fs::read_to_string(&p.config).expect("config");
    std::fs::write(
        &p.config,
        config.replace("127.0.0.1:0", &format!("127.0.0.1:{metrics_port}"))
            + "\n[pnl]\nallowed_lateness = \"2s\"\n",
    )
    .expect("config");
    let prometheus = Prometheus::start(&p.dir, metrics_port);
    let start = unix_now();

    let mut generator = support::ledgerstream()
        .args(["generate", "--pg-url", &stack.pg_url(), "--seed", "11"])
        // 80 s of load: at least one minute boundary with enough events after it for the P&L minute to close.
        .args(["--max-changes", "4800", "--rate", "60/s"])
        .args(["--evolve-after", "1500", "--bad-row-rate", "0.03"])
        .args(["--fraud-rate", "0.05"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("generator");

    // First generation, then a drain and a restart (a recovery), then run to the end of the load.
    let mut run = p.spawn(&[]);
    std::thread::sleep(Duration::from_secs(15));
    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(status.success(), "drain failed: {status}\n{}", p.log());
    let mut run = p.spawn(&[]);
    assert!(
        generator.wait().expect("generator").success(),
        "generator failed"
    );
    // Let the tail through the watermark (idle barrier), the P&L minutes close, and a few scrapes land.
    std::thread::sleep(Duration::from_secs(20));
    if let Ok(Some(status)) = run.try_wait() {
        panic!("pipeline exited on its own ({status}):\n{}", p.log());
    }
    let end = unix_now();
    let range_s = end - start;

    let mut empty = Vec::new();
    for q in &queries {
        let expr = substitute(&q.expr, range_s);
        match finite_samples(prometheus.port, &expr, start, end) {
            Ok(n) if n > 0 => {}
            Ok(_) => empty.push(format!("{} / {}: no data: {expr}", q.dashboard, q.panel)),
            Err(e) => empty.push(format!("{} / {}: {e}: {expr}", q.dashboard, q.panel)),
        }
    }
    // Pre-registered series show zeros; these must have really happened in this run.
    for happened in [
        "sum(ledgerstream_schema_changes_total) > 0",
        "sum(ledgerstream_recoveries_total) > 0",
        "sum(ledgerstream_fraud_alerts_total) > 0",
        "sum(ledgerstream_dq_rejected_total) > 0",
        "sum(ledgerstream_pnl_transactions_total) > 0",
        "sum(ledgerstream_quarantine_total) > 0",
    ] {
        match finite_samples(prometheus.port, happened, start, end) {
            Ok(n) if n > 0 => {}
            other => empty.push(format!("the run did not show `{happened}`: {other:?}")),
        }
    }
    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(status.success(), "drain failed: {status}");
    assert!(
        empty.is_empty(),
        "{} of {} dashboard queries show nothing:\n{}\n--- prometheus\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n"),
        prometheus.log()
    );
    eprintln!(
        "{} dashboard queries returned data over {range_s} s",
        queries.len()
    );
}
