#!/usr/bin/env python3
"""Query the ledgerstream Iceberg tables with DuckDB (iceberg extension) or pyiceberg.

The embedded catalog is a SQL catalog in sqlite (JDBC-catalog layout); DuckDB reads each table from the metadata
file the catalog points at.

    lakehouse.py --catalog .data/demo/catalog.db summary
    lakehouse.py --catalog .data/demo/catalog.db sql "SELECT count(*) FROM transactions_changes"
    lakehouse.py --catalog .data/demo/catalog.db pyiceberg-count transactions_changes
"""
import argparse
import json
import sqlite3
import sys

import duckdb
import duckdb_extensions


def metadata_locations(catalog_db, namespace):
    con = sqlite3.connect(catalog_db)
    try:
        rows = con.execute(
            "SELECT table_name, metadata_location FROM iceberg_tables WHERE table_namespace = ?",
            (namespace,),
        ).fetchall()
    finally:
        con.close()
    return {name: loc for name, loc in rows}


def duck(catalog_db, namespace):
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions=false")
    # The extensions come from pip wheels (no download at run time): install from the wheel, then load.
    duckdb_extensions.import_extension("avro", con=con)
    duckdb_extensions.import_extension("iceberg", con=con)
    con.execute("LOAD avro")
    con.execute("LOAD iceberg")
    for name, loc in metadata_locations(catalog_db, namespace).items():
        path = loc[len("file://"):] if loc.startswith("file://") else loc
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM iceberg_scan('{path}')")
    return con


def print_rows(cur, limit=None):
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall() if limit is None else cur.fetchmany(limit)
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) if rows else len(str(c)) for i, c in enumerate(cols)]
    print(" | ".join(str(c).ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(v).ljust(w) for v, w in zip(r, widths)))


def summary(con, namespace, catalog_db):
    tables = sorted(metadata_locations(catalog_db, namespace))
    print(f"Iceberg tables in namespace '{namespace}':")
    for t in tables:
        n = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        print(f"  {t:<24} {n:>10} rows")
    if "transactions_changes" in tables:
        print("\nTransactions by op and status (bronze changelog):")
        print_rows(con.execute(
            "SELECT op, status, count(*) AS changes, sum(amount) AS amount "
            "FROM transactions_changes GROUP BY ALL ORDER BY op, status"))
    if "quarantine" in tables:
        print("\nQuarantined records by reason and rule:")
        print_rows(con.execute(
            "SELECT error_kind, coalesce(rule, '') AS rule, count(*) AS n FROM quarantine "
            "GROUP BY ALL ORDER BY n DESC"))
    if "transactions_enriched" in tables:
        print("\nEnriched transactions by home country and status (as of each transaction):")
        print_rows(con.execute(
            "SELECT user_country, enrichment_status, count(*) AS n, sum(amount) AS amount "
            "FROM transactions_enriched WHERE op IN ('c', 'r') GROUP BY ALL ORDER BY n DESC LIMIT 8"))
    if "fraud_alerts" in tables:
        print("\nFraud alerts by rule:")
        print_rows(con.execute(
            "SELECT rule, severity, count(*) AS alerts, count(DISTINCT user_id) AS users "
            "FROM fraud_alerts GROUP BY ALL ORDER BY alerts DESC"))
        print_rows(con.execute(
            "SELECT rule, user_id, reason FROM fraud_alerts ORDER BY event_time DESC LIMIT 5"))
    if "pnl_minutely" in tables:
        print("\nP&L per minute and currency (sum of partial rows; last 5 minutes with data):")
        print_rows(con.execute(
            "SELECT minute, currency, sum(fees_earned) AS fees, sum(refund_losses + chargeback_losses) AS losses, "
            "sum(net_revenue) AS net, sum(volume) AS volume, sum(tx_count) AS txs FROM pnl_minutely "
            "GROUP BY ALL ORDER BY minute DESC, currency LIMIT 10"))
    if "dq_results" in tables:
        print("\nPost-write data-quality checks:")
        print_rows(con.execute(
            "SELECT \"check\", passed, count(*) AS snapshots, sum(failing_rows) AS failing_rows "
            "FROM dq_results GROUP BY ALL ORDER BY 1, 2"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", required=True, help="sqlite catalog file")
    ap.add_argument("--namespace", default="fintech")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("summary")
    q = sub.add_parser("sql")
    q.add_argument("query")
    q.add_argument("--json", action="store_true", help="print rows as JSON lines")
    c = sub.add_parser("pyiceberg-count")
    c.add_argument("table")
    args = ap.parse_args()

    if args.cmd == "pyiceberg-count":
        from pyiceberg.catalog.sql import SqlCatalog
        cat = SqlCatalog("ledgerstream", uri=f"sqlite:///{args.catalog}")
        t = cat.load_table(f"{args.namespace}.{args.table}")
        print(t.scan().to_arrow().num_rows)
        return
    con = duck(args.catalog, args.namespace)
    if args.cmd == "summary":
        summary(con, args.namespace, args.catalog)
    elif args.json:
        cur = con.execute(args.query)
        cols = [d[0] for d in cur.description]
        for row in cur.fetchall():
            print(json.dumps(dict(zip(cols, row)), default=str))
    else:
        print_rows(con.execute(args.query))


if __name__ == "__main__":
    sys.exit(main())
