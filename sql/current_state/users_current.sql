-- users_current: the users table as it stands now, rebuilt from the users_changes changelog.
--
-- One row per user id that exists after the last committed change: the change with the highest LSN per id wins
-- (several changes of one id in one PostgreSQL transaction share tx_id but never an LSN), and an id whose last
-- change is a delete ('d') is gone. Columns: the changelog columns of that last change (op, lsn, tx_id,
-- source_ts, kafka_partition, kafka_offset) followed by the user's columns, including columns added at the
-- source later.
--
-- Truncates: Debezium skips them by default (skipped.operations=t) and ledgerstream writes no changelog row for a
-- truncate, so a TRUNCATE at the source is not visible here.
--
-- Portable SQL: the same text runs in DuckDB, DataFusion (`ledgerstream query`) and Trino. It names the
-- changelog table unqualified; see docs/queries.md for how each engine resolves it.
WITH latest AS (
    SELECT id, max(lsn) AS lsn
    FROM users_changes
    GROUP BY id
)
SELECT c.*
FROM users_changes AS c
JOIN latest AS l ON c.id = l.id AND c.lsn = l.lsn
WHERE c.op <> 'd'
