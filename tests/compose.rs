//! Static checks of `docker-compose.yml` against the files the native stack uses.
//!
//! No Docker engine is needed: the compose file is parsed and its wiring compared with the repository. The point is
//! that compose and `stack/stack.sh` cannot drift apart silently: both must read the same
//! `stack/debezium/connector.properties` and `stack/topics.conf`, start in an order that cannot lose CDC events,
//! and keep every credential in `.env`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The subset of the compose specification these checks read.
#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Deserialize)]
struct Service {
    image: Option<String>,
    /// Present for services built from this repository's `Dockerfile`.
    build: Option<String>,
    #[serde(default)]
    depends_on: BTreeMap<String, Dependency>,
    #[serde(default)]
    environment: BTreeMap<String, Scalar>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    ports: Vec<String>,
    healthcheck: Option<Healthcheck>,
    command: Option<Words>,
    entrypoint: Option<Words>,
    restart: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Dependency {
    condition: String,
}

#[derive(Debug, Deserialize)]
struct Healthcheck {
    test: Words,
}

/// `command`, `entrypoint` and `healthcheck.test` accept a string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Words {
    One(String),
    Many(Vec<String>),
}

impl Words {
    fn joined(&self) -> String {
        match self {
            Words::One(s) => s.clone(),
            Words::Many(v) => v.join(" "),
        }
    }
}

/// Environment values may be written as strings, numbers or booleans.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

const LONG_RUNNING: &[&str] = &[
    "postgres",
    "kafka",
    "connect",
    "minio",
    "iceberg-rest",
    "trino",
    "prometheus",
    "tempo",
    "grafana",
    "processor",
];
/// One-shot jobs: they exit, so dependants wait for `service_completed_successfully`, not health.
const JOBS: &[&str] = &["topic-init", "connect-register", "minio-init", "generator"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn compose() -> Compose {
    serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses")
}

fn service<'a>(c: &'a Compose, name: &str) -> &'a Service {
    c.services
        .get(name)
        .unwrap_or_else(|| panic!("service {name} missing"))
}

/// Bind mounts of a service as (host path relative to the repo, container path).
fn binds(s: &Service) -> Vec<(String, String)> {
    s.volumes
        .iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            let host = parts
                .next()
                .unwrap_or_default()
                .trim_start_matches("./")
                .to_owned();
            let target = parts
                .next()
                .unwrap_or_else(|| panic!("bind {v} has no target"))
                .to_owned();
            (host, target)
        })
        .collect()
}

fn mount_target(s: &Service, host: &str) -> String {
    binds(s)
        .into_iter()
        .find(|(h, _)| h == host)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("./{host} is not mounted"))
}

fn env(s: &Service, key: &str) -> String {
    s.environment
        .get(key)
        .map(Scalar::text)
        .unwrap_or_else(|| panic!("environment {key} missing"))
}

/// Minimal `key=value` reader for files without escapes or continuations (Trino catalogs, .env files).
fn simple_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The `${NAME}` placeholders of a text.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name: String = after[..end]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
        rest = &after[end..];
    }
    out
}

fn topics_conf() -> Vec<String> {
    read("stack/topics.conf")
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect()
}

fn connector_properties() -> BTreeMap<String, String> {
    simple_properties(&read("stack/debezium/connector.properties"))
}

#[test]
fn expected_services_exist_and_long_running_ones_have_healthchecks() {
    let c = compose();
    let want: BTreeSet<&str> = LONG_RUNNING.iter().chain(JOBS).copied().collect();
    let have: BTreeSet<&str> = c.services.keys().map(String::as_str).collect();
    assert_eq!(have, want);
    for name in LONG_RUNNING {
        let s = service(&c, name);
        let hc = s
            .healthcheck
            .as_ref()
            .unwrap_or_else(|| panic!("{name} has no healthcheck"));
        assert!(
            !hc.test.joined().trim().is_empty(),
            "{name}: empty healthcheck"
        );
        assert!(
            s.image.is_some() || s.build.is_some(),
            "{name}: neither image nor build"
        );
    }
    for name in JOBS {
        let s = service(&c, name);
        if *name != "generator" {
            assert_eq!(s.restart.as_deref(), Some("no"), "{name} is a one-shot job");
        }
    }
    assert_eq!(service(&c, "processor").build.as_deref(), Some("."));
    assert_eq!(
        service(&c, "processor")
            .command
            .as_ref()
            .map(Words::joined)
            .as_deref(),
        Some("ledgerstream run --config /etc/ledgerstream/ledgerstream.toml")
    );
    // The generator runs the image the processor service builds.
    assert_eq!(
        service(&c, "generator").image,
        service(&c, "processor").image
    );
    assert!(
        service(&c, "generator")
            .command
            .as_ref()
            .map(Words::joined)
            .unwrap_or_default()
            .starts_with("ledgerstream generate")
    );
}

#[test]
fn depends_on_orders_the_pipeline() {
    let c = compose();
    let expect: &[(&str, &[(&str, &str)])] = &[
        ("topic-init", &[("kafka", "service_healthy")]),
        (
            "connect",
            &[
                ("kafka", "service_healthy"),
                ("postgres", "service_healthy"),
                ("topic-init", "service_completed_successfully"),
            ],
        ),
        ("connect-register", &[("connect", "service_healthy")]),
        ("minio-init", &[("minio", "service_healthy")]),
        (
            "iceberg-rest",
            &[("minio-init", "service_completed_successfully")],
        ),
        ("trino", &[("iceberg-rest", "service_healthy")]),
        (
            "grafana",
            &[
                ("prometheus", "service_healthy"),
                ("tempo", "service_healthy"),
            ],
        ),
        (
            "processor",
            &[
                ("connect-register", "service_completed_successfully"),
                ("topic-init", "service_completed_successfully"),
                ("iceberg-rest", "service_healthy"),
                ("tempo", "service_healthy"),
            ],
        ),
        (
            "generator",
            &[
                ("postgres", "service_healthy"),
                ("processor", "service_healthy"),
            ],
        ),
    ];
    for (name, deps) in expect {
        let got: BTreeMap<&str, &str> = service(&c, name)
            .depends_on
            .iter()
            .map(|(k, d)| (k.as_str(), d.condition.as_str()))
            .collect();
        let want: BTreeMap<&str, &str> = deps.iter().copied().collect();
        assert_eq!(got, want, "depends_on of {name}");
    }
    // Generic consistency: a health condition needs a healthcheck, and jobs are awaited to completion.
    for (name, s) in &c.services {
        for (dep, d) in &s.depends_on {
            let target = service(&c, dep);
            match d.condition.as_str() {
                "service_healthy" => assert!(
                    target.healthcheck.is_some(),
                    "{name} waits on {dep}'s health"
                ),
                "service_completed_successfully" => {
                    assert!(JOBS.contains(&dep.as_str()), "{dep} is no job")
                }
                other => panic!("{name} -> {dep}: unexpected condition {other}"),
            }
        }
    }
}

#[test]
fn connect_registration_uses_the_native_connector_properties() {
    let c = compose();
    let reg = service(&c, "connect-register");
    let props_target = mount_target(reg, "stack/debezium/connector.properties");
    let script_target = mount_target(reg, "stack/tools/props.py");
    let command = reg
        .command
        .as_ref()
        .expect("connect-register has a command")
        .joined();
    assert_eq!(
        command,
        format!("python {script_target} register {props_target} http://connect:8083")
    );

    // Every placeholder of the shared file is provided, and the database host is the compose service.
    let values: Vec<String> = connector_properties().into_values().collect();
    let needed = placeholders(&values.join("\n"));
    assert_eq!(
        needed,
        [
            "LS_PARTITIONS",
            "LS_PG_DB",
            "LS_PG_HOST",
            "LS_PG_PASSWORD",
            "LS_PG_PORT",
            "LS_PG_USER"
        ]
        .into_iter()
        .map(String::from)
        .collect::<BTreeSet<_>>()
    );
    for var in &needed {
        env(reg, var);
    }
    assert_eq!(env(reg, "LS_PG_HOST"), "postgres");

    // The native stack hands the very same file to its launcher.
    let stack_sh = read("stack/stack.sh");
    assert!(stack_sh.contains("\"$LS_REPO/stack/debezium/connector.properties\""));
}

#[test]
fn topic_init_creates_exactly_the_topics_of_topics_conf() {
    let c = compose();
    let init = service(&c, "topic-init");
    let conf_target = mount_target(init, "stack/topics.conf");
    assert_eq!(env(init, "TOPICS_CONF"), conf_target);
    let script_target = mount_target(init, "stack/compose/create-topics.sh");
    let entry = init
        .entrypoint
        .as_ref()
        .expect("topic-init entrypoint")
        .joined();
    assert_eq!(entry, format!("/bin/sh {script_target}"));
    // The script must take its list from the file, not carry one of its own.
    let script = read("stack/compose/create-topics.sh");
    assert!(script.contains("<\"$TOPICS_CONF\""));
    assert!(
        !script.contains("fintech"),
        "create-topics.sh names topics itself"
    );

    let topics = topics_conf();
    assert_eq!(
        topics,
        [
            "fintech.public.users",
            "fintech.public.wallets",
            "fintech.public.transactions",
            "__debezium-heartbeat.fintech",
            "fintech.alerts",
        ]
    );
    // And the list is what the connector writes to: one topic per included table, plus its heartbeat topic.
    let props = connector_properties();
    let prefix = &props["topic.prefix"];
    for table in props["table.include.list"].split(',') {
        let topic = format!("{prefix}.{table}");
        assert!(topics.contains(&topic), "{topic} missing from topics.conf");
    }
    assert!(topics.contains(&format!("__debezium-heartbeat.{prefix}")));
    assert_eq!(
        props["topic.creation.default.partitions"],
        "${LS_PARTITIONS}"
    );
    assert_eq!(env(init, "LS_PARTITIONS"), "${LS_PARTITIONS:-4}");
}

#[test]
fn trino_catalog_points_at_rest_catalog_and_minio() {
    let c = compose();
    let trino = service(&c, "trino");
    assert_eq!(
        mount_target(trino, "deploy/trino/catalog"),
        "/etc/trino/catalog"
    );
    let cat = simple_properties(&read("deploy/trino/catalog/iceberg.properties"));
    assert_eq!(cat["connector.name"], "iceberg");
    assert_eq!(cat["iceberg.catalog.type"], "rest");
    assert_eq!(cat["iceberg.rest-catalog.uri"], "http://iceberg-rest:8181");
    assert!(
        service(&c, "iceberg-rest")
            .ports
            .iter()
            .any(|p| p.ends_with(":8181"))
    );
    assert_eq!(cat["s3.endpoint"], "http://minio:9000");
    assert_eq!(cat["s3.path-style-access"], "true");
    assert_eq!(cat["fs.native-s3.enabled"], "true");
    for key in [
        "s3.aws-access-key",
        "s3.aws-secret-key",
        "iceberg.rest-catalog.warehouse",
    ] {
        let value = &cat[key];
        let var = value
            .split("${ENV:")
            .nth(1)
            .and_then(|r| r.split('}').next())
            .unwrap_or_else(|| panic!("{key} must come from ${{ENV:...}}, is {value}"));
        env(trino, var);
    }
    // The REST catalog writes to the same bucket through path-style S3 on MinIO.
    let rest = service(&c, "iceberg-rest");
    assert_eq!(env(rest, "CATALOG_S3_ENDPOINT"), "http://minio:9000");
    assert_eq!(env(rest, "CATALOG_S3_PATH__STYLE__ACCESS"), "true");
    assert_eq!(
        env(rest, "CATALOG_WAREHOUSE"),
        "s3://${LS_WAREHOUSE_BUCKET:-warehouse}/"
    );
}

fn is_credential(key: &str) -> bool {
    ["PASSWORD", "SECRET", "ACCESS_KEY", "_USER"]
        .iter()
        .any(|m| key.contains(m))
}

#[test]
fn no_credential_literal_inline() {
    let c = compose();
    let env_example = simple_properties(&read(".env.example"));
    let mut seen = 0;
    for (name, s) in &c.services {
        for (key, value) in &s.environment {
            if !is_credential(key) {
                continue;
            }
            seen += 1;
            let v = value.text();
            let var = v
                .strip_prefix("${")
                .and_then(|r| r.split_once(":?"))
                .map(|(var, _)| var)
                .unwrap_or_else(|| {
                    panic!("{name}.{key} = {v:?} is not a required ${{VAR:?}} reference")
                });
            assert!(
                is_credential(var),
                "{name}.{key} comes from {var}, which is not a credential variable"
            );
            assert!(
                env_example.contains_key(var),
                "{var} missing from .env.example"
            );
        }
    }
    assert!(
        seen >= 10,
        "only {seen} credential variables found: the key patterns no longer match"
    );
    // No credential value of the example file appears anywhere in the compose file or the Trino catalog.
    let compose_text = read("docker-compose.yml");
    let catalog_text = read("deploy/trino/catalog/iceberg.properties");
    for (key, value) in env_example.iter().filter(|(k, _)| k.contains("PASSWORD")) {
        assert!(
            !compose_text.contains(value.as_str()),
            "{key}'s value is inline in docker-compose.yml"
        );
        assert!(
            !catalog_text.contains(value.as_str()),
            "{key}'s value is inline in the Trino catalog"
        );
    }
}

#[test]
fn host_ports_bind_loopback_and_bind_mounts_exist() {
    let c = compose();
    for (name, s) in &c.services {
        for p in &s.ports {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name} publishes {p} on all interfaces"
            );
        }
        for (host, _) in binds(s) {
            assert!(
                repo().join(&host).exists(),
                "{name} mounts ./{host}, which does not exist"
            );
        }
    }
}

#[test]
fn grafana_provisioning_is_wired() {
    let c = compose();
    let g = service(&c, "grafana");
    assert_eq!(
        mount_target(g, "grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let dashboards_target = mount_target(g, "grafana/dashboards");
    assert!(repo().join("grafana/dashboards").is_dir());

    #[derive(Deserialize)]
    struct Datasources {
        datasources: Vec<Datasource>,
    }
    #[derive(Deserialize)]
    struct Datasource {
        #[serde(rename = "type")]
        kind: String,
        url: String,
    }
    let ds: Datasources =
        serde_yaml::from_str(&read("grafana/provisioning/datasources/datasources.yml"))
            .expect("datasources");
    let got: BTreeMap<String, String> = ds
        .datasources
        .into_iter()
        .map(|d| (d.kind, d.url))
        .collect();
    let want: BTreeMap<String, String> = [
        ("prometheus".to_owned(), "http://prometheus:9090".to_owned()),
        ("tempo".to_owned(), "http://tempo:3200".to_owned()),
    ]
    .into();
    assert_eq!(got, want);

    #[derive(Deserialize)]
    struct Providers {
        providers: Vec<Provider>,
    }
    #[derive(Deserialize)]
    struct Provider {
        options: ProviderOptions,
    }
    #[derive(Deserialize)]
    struct ProviderOptions {
        path: String,
    }
    let p: Providers =
        serde_yaml::from_str(&read("grafana/provisioning/dashboards/dashboards.yml"))
            .expect("dashboards");
    let paths: Vec<&str> = p
        .providers
        .iter()
        .map(|p| p.options.path.as_str())
        .collect();
    assert_eq!(paths, [dashboards_target.as_str()]);

    // Prometheus scrapes the port the processor's healthcheck probes.
    let prom = service(&c, "prometheus");
    let cfg = mount_target(prom, "deploy/prometheus/prometheus.yml");
    assert_eq!(cfg, "/etc/prometheus/prometheus.yml");
    let prom_text = read("deploy/prometheus/prometheus.yml");
    let hc = service(&c, "processor")
        .healthcheck
        .as_ref()
        .expect("processor healthcheck")
        .test
        .joined();
    let port = hc
        .rsplit('/')
        .next()
        .expect("port in processor healthcheck");
    assert!(
        prom_text.contains(&format!("processor:{port}")),
        "prometheus does not scrape processor:{port}"
    );
    assert!(Path::new(&repo().join("deploy/tempo/tempo.yaml")).exists());
}
