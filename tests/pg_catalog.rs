//! The production SQL catalog: Iceberg metadata in PostgreSQL (the JDBC-catalog layout that Trino's
//! `iceberg.catalog.type=jdbc` and pyiceberg's SqlCatalog read), data files on the local filesystem.
//!
//! Synthetic Debezium-format events go straight into a real broker; the processor is `kill -9`ed once mid-stream
//! and restarted. Every changelog table must then hold exactly the input (no duplicate `(id, lsn)`, nothing
//! missing), read through ledgerstream's catalog, and pyiceberg (an independent reader) must see the same
//! counts through the same PostgreSQL catalog.

mod support;

use ledgerstream::sink::CatalogConfig;
use std::collections::BTreeSet;
use std::time::Duration;
use support::pg::TestPg;
use support::{Broker, PipelineDir, id_lsn, ledgerstream, read_table_from, terminate, wait_for};

const EVENTS: u64 = 6_000;
const SEED: u64 = 23;
const USERS: i64 = 200;
const BAD_EVERY: u64 = 499;

fn psql(pg: &TestPg, db: &str, sql: &str) -> String {
    support::run_ok(
        std::process::Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(pg.url_for(db))
            .args(["-c", sql]),
        sql,
    )
}

#[test]
fn postgres_catalog_is_exactly_once_across_a_kill() {
    let pg = TestPg::start();
    psql(&pg, "postgres", "CREATE DATABASE iceberg");
    let broker = Broker::start();
    broker.create_topics("pgcat", 2);
    let p = PipelineDir::new("pgcat", &broker.brokers(), "pgcat", "500ms");
    let warehouse = p.dir.join("warehouse");
    let uri = pg.url_for("iceberg");
    let mut config = std::fs::read_to_string(&p.config).expect("config");
    config.push_str(&format!(
        "\n[iceberg.catalog]\ntype = \"sql\"\nuri = \"{uri}\"\nwarehouse = \"{}\"\n",
        warehouse.display()
    ));
    std::fs::write(&p.config, config).expect("config");

    let mut producer = ledgerstream()
        .args(["produce", "--brokers", &broker.brokers(), "--topic-prefix"])
        .args(["pgcat", "--events", &EVENTS.to_string()])
        .args(["--seed", &SEED.to_string(), "--users", &USERS.to_string()])
        .args(["--bad-every", &BAD_EVERY.to_string(), "--rate", "1500"])
        .spawn()
        .expect("producer");

    let catalog = CatalogConfig::Sql {
        uri: uri.clone(),
        warehouse: format!("file://{}", warehouse.display()),
        s3: None,
    };
    let rows = |table: &str| -> usize {
        read_table_from(&catalog, "fintech", table)
            .iter()
            .map(|b| b.num_rows())
            .sum()
    };

    // Crash once something is committed.
    let mut crashing = p.spawn(&[]);
    let committed = wait_for(Duration::from_secs(60), || {
        (rows("transactions_changes") > 0).then_some(())
    });
    assert!(committed.is_some(), "nothing committed; log:\n{}", p.log());
    crashing.kill().expect("kill -9");
    crashing.wait().expect("reap");

    // The truth: what the producer writes.
    let (want, bad) = support::synth_truth(SEED, USERS, EVENTS, BAD_EVERY);

    let mut run = p.spawn(&[]);
    assert!(producer.wait().expect("producer").success());
    let total: usize = want.values().map(BTreeSet::len).sum::<usize>() + bad;
    let count_all = || want.keys().map(|t| rows(t)).sum::<usize>() + rows("quarantine");
    let caught_up = wait_for(Duration::from_secs(120), || {
        (count_all() >= total).then_some(())
    });
    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(
        caught_up.is_some(),
        "{} of {total} rows; log:\n{}",
        count_all(),
        p.log()
    );
    assert!(status.success(), "drain failed: {status}");

    for (table, expected) in &want {
        let ids = id_lsn(&read_table_from(&catalog, "fintech", table));
        let got: BTreeSet<(i64, i64)> = ids.iter().copied().collect();
        assert_eq!(ids.len(), got.len(), "{table}: duplicates after kill -9");
        assert_eq!(&got, expected, "{table}: not exactly the input");
    }
    assert_eq!(
        rows("quarantine"),
        bad,
        "malformed records quarantined once"
    );

    // The JDBC layout in PostgreSQL: catalog `ledgerstream`, namespace `fintech`, one row per table.
    let listed = psql(
        &pg,
        "iceberg",
        "SELECT catalog_name || '.' || table_namespace || '.' || table_name FROM iceberg_tables ORDER BY 1",
    );
    for table in want
        .keys()
        .copied()
        .chain(["quarantine", "transactions_enriched"])
    {
        assert!(
            listed
                .lines()
                .any(|l| l.trim() == format!("ledgerstream.fintech.{table}")),
            "{table} missing from iceberg_tables:\n{listed}"
        );
    }

    // An independent reader through the same catalog: pyiceberg's SqlCatalog on PostgreSQL.
    let script = format!(
        "from pyiceberg.catalog.sql import SqlCatalog\n\
         c = SqlCatalog('ledgerstream', uri='{}', warehouse='file://{}')\n\
         for t in {:?}:\n    print(t, c.load_table('fintech.' + t).scan().to_arrow().num_rows)\n",
        uri.replace("postgres://", "postgresql+psycopg://"),
        warehouse.display(),
        want.keys().collect::<Vec<_>>(),
    );
    let out = support::run_ok(
        std::process::Command::new(support::venv_python()).args(["-c", &script]),
        "pyiceberg over the PostgreSQL catalog",
    );
    for (table, expected) in &want {
        assert!(
            out.lines()
                .any(|l| l == format!("{table} {}", expected.len())),
            "pyiceberg disagrees on {table}:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&p.dir);
}
