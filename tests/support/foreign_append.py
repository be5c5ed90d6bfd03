"""Another tool appending to a pipeline table, as a user's script would: pyiceberg's own append.

    foreign_append.py CATALOG_DB NAMESPACE TABLE ROWS

Copies the first ROWS rows of the table with their `id` negated (so they never collide with pipeline rows) and
appends them in one pyiceberg commit. Prints the ids appended.
"""
import sys

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog


def main():
    catalog_db, namespace, table, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cat = SqlCatalog("ledgerstream", uri=f"sqlite:///{catalog_db}")
    t = cat.load_table(f"{namespace}.{table}")
    data = t.scan(limit=rows).to_arrow().slice(0, rows)
    if data.num_rows < rows:
        raise SystemExit(f"{table} has only {data.num_rows} rows, need {rows}")
    i = data.schema.get_field_index("id")
    data = data.set_column(i, data.schema.field(i), pc.negate(data.column("id")))
    t.append(data)
    print(",".join(str(v) for v in data.column("id").to_pylist()))


if __name__ == "__main__":
    main()
