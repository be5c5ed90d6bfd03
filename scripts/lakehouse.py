#!/usr/bin/env python3
"""Query the ledgerstream Iceberg tables with DuckDB (iceberg extension) or pyiceberg.

The embedded catalog is a SQL catalog in sqlite (JDBC-catalog layout); DuckDB reads each table from the metadata
file the catalog points at. Every table becomes a view of its plain name, and the current-state views of
sql/current_state/ (users_current, wallets_current) are created on top.

    lakehouse.py --catalog .data/demo/catalog.db summary
    lakehouse.py --catalog .data/demo/catalog.db sql "SELECT count(*) FROM transactions_changes"
    lakehouse.py --catalog .data/demo/catalog.db --as-of-checkpoint 3 sql "SELECT count(*) FROM users_current"
    lakehouse.py --catalog .data/demo/catalog.db pyiceberg-count transactions_changes
    lakehouse.py --catalog .data/demo/catalog.db pyiceberg-stats

--as-of-checkpoint N reads every table as ledgerstream checkpoint N left it: the newest snapshot in the table's
ancestry whose summary has ledgerstream.checkpoint-id <= N (of --writer-id, if given), or no rows if there is
none. That is the rule `ledgerstream query --as-of-checkpoint N` applies.
"""
import argparse
import json
import os
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


CURRENT_STATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sql", "current_state")
CHECKPOINT_KEY = "ledgerstream.checkpoint-id"
WRITER_KEY = "ledgerstream.writer-id"


def local_path(location):
    return location[len("file://"):] if location.startswith("file://") else location


def snapshot_as_of(metadata_path, checkpoint, writer_id=None):
    """The snapshot id that checkpoint `checkpoint` left in the table, or None if the table was empty then.

    Walks the current snapshot's ancestry, newest first, for the first snapshot of ours (of `writer_id` if given)
    with a checkpoint id at or below `checkpoint`: the rule of `ledgerstream query --as-of-checkpoint`.
    """
    with open(metadata_path) as f:
        md = json.load(f)
    by_id = {s["snapshot-id"]: s for s in md.get("snapshots", [])}
    sid = md.get("current-snapshot-id")
    while sid is not None and sid != -1 and sid in by_id:
        snap = by_id[sid]
        summary = snap.get("summary", {})
        cp = summary.get(CHECKPOINT_KEY)
        if cp is not None and (writer_id is None or summary.get(WRITER_KEY) == writer_id) and int(cp) <= checkpoint:
            return sid
        sid = snap.get("parent-snapshot-id")
    return None


def duck(catalog_db, namespace, as_of_checkpoint=None, writer_id=None):
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions=false")
    # The extensions come from pip wheels (no download at run time): install from the wheel, then load.
    duckdb_extensions.import_extension("avro", con=con)
    duckdb_extensions.import_extension("iceberg", con=con)
    con.execute("LOAD avro")
    con.execute("LOAD iceberg")
    names = set()
    for name, loc in metadata_locations(catalog_db, namespace).items():
        path = local_path(loc)
        if as_of_checkpoint is None:
            scan = f"SELECT * FROM iceberg_scan('{path}')"
        else:
            sid = snapshot_as_of(path, as_of_checkpoint, writer_id)
            scan = (f"SELECT * FROM iceberg_scan('{path}', snapshot_from_id => {sid})" if sid is not None
                    else f"SELECT * FROM iceberg_scan('{path}') LIMIT 0")
        con.execute(f"CREATE VIEW {name} AS {scan}")
        names.add(name)
    # The current-state views: the same SQL files Trino and `ledgerstream query` use.
    for view, source in (("users_current", "users_changes"), ("wallets_current", "wallets_changes")):
        if source in names:
            with open(os.path.join(CURRENT_STATE_DIR, f"{view}.sql")) as f:
                con.execute(f"CREATE VIEW {view} AS\n" + f.read().strip().rstrip(";"))
    return con


def pyiceberg_stats(catalog_db, namespace):
    """One JSON line per table: rows (read back), data files, current snapshot id and its checkpoint id."""
    from pyiceberg.catalog.sql import SqlCatalog
    cat = SqlCatalog("ledgerstream", uri=f"sqlite:///{catalog_db}")
    for (_, name) in sorted(cat.list_tables(namespace)):
        t = cat.load_table(f"{namespace}.{name}")
        snap = t.current_snapshot()
        files = list(t.scan().plan_files()) if snap else []
        props = snap.summary.additional_properties if snap else {}
        print(json.dumps({
            "name": name,
            "rows": t.scan().to_arrow().num_rows if snap else 0,
            "data_files": len(files),
            "snapshot_id": snap.snapshot_id if snap else None,
            "committed_at_ms": snap.timestamp_ms if snap else None,
            "checkpoint_id": int(props[CHECKPOINT_KEY]) if CHECKPOINT_KEY in props else None,
        }))


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
    ap.add_argument("--as-of-checkpoint", type=int, metavar="N",
                    help="read every table as ledgerstream checkpoint N left it")
    ap.add_argument("--writer-id", help="with --as-of-checkpoint: only this writer's snapshots count")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("summary")
    q = sub.add_parser("sql")
    q.add_argument("query")
    q.add_argument("--json", action="store_true", help="print rows as JSON lines")
    c = sub.add_parser("pyiceberg-count")
    c.add_argument("table")
    sub.add_parser("pyiceberg-stats")
    args = ap.parse_args()

    if args.cmd == "pyiceberg-stats":
        pyiceberg_stats(args.catalog, args.namespace)
        return

    if args.cmd == "pyiceberg-count":
        from pyiceberg.catalog.sql import SqlCatalog
        cat = SqlCatalog("ledgerstream", uri=f"sqlite:///{args.catalog}")
        t = cat.load_table(f"{args.namespace}.{args.table}")
        print(t.scan().to_arrow().num_rows)
        return
    con = duck(args.catalog, args.namespace, args.as_of_checkpoint, args.writer_id)
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
