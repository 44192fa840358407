-- eas-relay cluster schema, version 2: every change to what people said is
-- recorded by the database itself. A row trigger on domains, static_aliases,
-- chain_reveals and suspensions appends the row's new state to `changes`
-- in the same transaction, so that no writer (a node, `cluster init`, or
-- somebody with psql) can change a claim without every node hearing of it
-- and checking it again: a reveal edited by hand is verified against the
-- chain by every node like any other, and refused when it does not hold.
--
-- A change row:
--   kind     'domain' | 'alias' | 'reveal' | 'suspension' (the table)
--   key      the domain ('domain'), or 'local@domain' (the others)
--   payload  to_jsonb(NEW) of the row (its columns by name), or JSON null
--            when the row was deleted (a domain's cascade deletes its
--            aliases, reveals and suspensions, each with its own row)
--   origin   current_setting('eas.origin', true): the node id a writer
--            sets with SET LOCAL eas.origin = '…' (empty: somebody else)
--
-- The notification carries no payload: identical notifications of one
-- transaction are folded into one, so a bulk import wakes the nodes once;
-- they read `changes` from the last id they applied anyway.

CREATE FUNCTION eas_row_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- The rows as JSON: PL/pgSQL resolves NEW.local even in a CASE branch
    -- not taken, and domains has no `local`.
    old_row jsonb := CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END;
    origin text := coalesce(current_setting('eas.origin', true), '');
    row_kind text := CASE TG_TABLE_NAME
        WHEN 'domains' THEN 'domain'
        WHEN 'static_aliases' THEN 'alias'
        WHEN 'chain_reveals' THEN 'reveal'
        ELSE 'suspension' END;
    old_key text;
    new_key text;
BEGIN
    IF old_row IS NOT NULL THEN
        old_key := CASE WHEN row_kind = 'domain' THEN old_row->>'domain'
                        ELSE (old_row->>'local') || '@' || (old_row->>'domain') END;
    END IF;
    IF new_row IS NOT NULL THEN
        new_key := CASE WHEN row_kind = 'domain' THEN new_row->>'domain'
                        ELSE (new_row->>'local') || '@' || (new_row->>'domain') END;
    END IF;
    -- The same lock as eas_record_change: change ids become visible in
    -- commit order (see V1).
    PERFORM pg_advisory_xact_lock(7305246924098530919);
    IF new_row IS NOT NULL THEN
        INSERT INTO changes (kind, key, payload, origin)
        VALUES (row_kind, new_key, new_row, origin);
    END IF;
    -- A deletion, or an UPDATE that moved the row to another key (domain
    -- or local changed by hand): the old key is gone.
    IF old_row IS NOT NULL AND old_key IS DISTINCT FROM new_key THEN
        INSERT INTO changes (kind, key, payload, origin)
        VALUES (row_kind, old_key, 'null'::jsonb, origin);
    END IF;
    PERFORM pg_notify('eas_changes', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER domains_change AFTER INSERT OR UPDATE OR DELETE ON domains
    FOR EACH ROW EXECUTE FUNCTION eas_row_change();
CREATE TRIGGER static_aliases_change AFTER INSERT OR UPDATE OR DELETE ON static_aliases
    FOR EACH ROW EXECUTE FUNCTION eas_row_change();
CREATE TRIGGER chain_reveals_change AFTER INSERT OR UPDATE OR DELETE ON chain_reveals
    FOR EACH ROW EXECUTE FUNCTION eas_row_change();
CREATE TRIGGER suspensions_change AFTER INSERT OR UPDATE OR DELETE ON suspensions
    FOR EACH ROW EXECUTE FUNCTION eas_row_change();
