-- Test-only ground truth: every row change of the CDC tables, in commit order per row, written by triggers in the
-- same transaction as the change. Not in the publication, so Debezium never sees it.
CREATE TABLE IF NOT EXISTS ls_audit (
    seq      bigserial PRIMARY KEY,
    tbl      text   NOT NULL,
    op       text   NOT NULL,
    pk       bigint NOT NULL,
    row_data jsonb  NOT NULL,
    txid     bigint NOT NULL DEFAULT txid_current()
);

CREATE OR REPLACE FUNCTION ls_audit_fn() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO ls_audit (tbl, op, pk, row_data) VALUES (TG_TABLE_NAME, 'd', OLD.id, to_jsonb(OLD));
        RETURN OLD;
    END IF;
    INSERT INTO ls_audit (tbl, op, pk, row_data)
    VALUES (TG_TABLE_NAME, CASE TG_OP WHEN 'INSERT' THEN 'c' ELSE 'u' END, NEW.id, to_jsonb(NEW));
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'wallets', 'transactions'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'ls_audit_' || t) THEN
            EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION ls_audit_fn()',
                           'ls_audit_' || t, t);
        END IF;
    END LOOP;
END
$$;
