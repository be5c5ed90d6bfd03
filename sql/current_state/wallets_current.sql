-- wallets_current: the wallets table as it stands now, rebuilt from the wallets_changes changelog.
--
-- One row per wallet id that exists after the last committed change: the change with the highest LSN per id wins
-- (several changes of one id in one PostgreSQL transaction share tx_id but never an LSN), and an id whose last
-- change is a delete ('d') is gone.
--
-- Moving a wallet to another user: Debezium keys the topics by user id, so that UPDATE arrives as a delete under
-- the old user and a create under the new one, both with the UPDATE's LSN. Both rows match the highest LSN; the
-- delete is filtered out and the create is the current row.
--
-- Columns: the changelog columns of that last change (op, lsn, tx_id, source_ts, kafka_partition, kafka_offset)
-- followed by the wallet's columns, including columns added at the source later.
--
-- Truncates: Debezium skips them by default (skipped.operations=t) and ledgerstream writes no changelog row for a
-- truncate, so a TRUNCATE at the source is not visible here.
--
-- Portable SQL: the same text runs in DuckDB, DataFusion (`ledgerstream query`) and Trino. It names the
-- changelog table unqualified; see docs/queries.md for how each engine resolves it.
WITH latest AS (
    SELECT id, max(lsn) AS lsn
    FROM wallets_changes
    GROUP BY id
)
SELECT c.*
FROM wallets_changes AS c
JOIN latest AS l ON c.id = l.id AND c.lsn = l.lsn
WHERE c.op <> 'd'
