-- ledgerstream source schema (PostgreSQL 15). Idempotent: safe to run on every start.
-- Used by the native stack (stack/stack.sh), docker-compose (mounted into the postgres image) and
-- `ledgerstream generate` (embedded with include_str!). Keep this the only copy.
--
-- user_id is nullable and amount has no CHECK on purpose: upstream bugs exist, and catching them is the
-- pipeline's data-quality job, not the source's.

CREATE TABLE IF NOT EXISTS users (
    id          bigserial PRIMARY KEY,
    email       text        NOT NULL,
    full_name   text        NOT NULL,
    country     char(2)     NOT NULL,
    kyc_status  text        NOT NULL,
    risk_tier   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS wallets (
    id          bigserial PRIMARY KEY,
    user_id     bigint,
    currency    char(3)       NOT NULL,
    balance     numeric(18,2) NOT NULL DEFAULT 0,
    status      text          NOT NULL,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS transactions (
    id                      bigserial PRIMARY KEY,
    wallet_id               bigint,
    user_id                 bigint,
    counterparty_wallet_id  bigint,
    kind                    text          NOT NULL,
    amount                  numeric(18,2) NOT NULL,
    fee                     numeric(18,2) NOT NULL DEFAULT 0,
    currency                char(3)       NOT NULL,
    status                  text          NOT NULL,
    country                 char(2),
    merchant                text,
    created_at              timestamptz   NOT NULL DEFAULT now(),
    updated_at              timestamptz   NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS wallets_user_id_idx ON wallets (user_id);
CREATE INDEX IF NOT EXISTS transactions_wallet_id_idx ON transactions (wallet_id);

-- Full before-images: without this a delete's `before` carries only the key and Debezium fills the NOT NULL
-- columns with 0 / "" / epoch.
ALTER TABLE users        REPLICA IDENTITY FULL;
ALTER TABLE wallets      REPLICA IDENTITY FULL;
ALTER TABLE transactions REPLICA IDENTITY FULL;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'ledgerstream_pub') THEN
        CREATE PUBLICATION ledgerstream_pub FOR TABLE users, wallets, transactions;
    END IF;
END
$$;
