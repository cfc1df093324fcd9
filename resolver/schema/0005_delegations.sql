-- idnode schema, version 5: delegated prefixes follow the prefix handles that delegate them.
--
-- A prefix is delegated by its prefix handle 0.NA/<P> carrying an HS_SITE or HS_SITE.PREFIX value (the Handle
-- model: research/handle-resolution-model.md §1), whoever writes it: `idnode prefix delegate`, an operator's PUT,
-- an import, plain SQL. These triggers keep a 'delegated' row in the prefix table for exactly those prefix handles,
-- so the read path knows without a query which prefixes to forward (resolver/prefixes.py). A homed prefix stays
-- homed whatever its prefix handle says (a node may hold its own site there). Statements that change no prefix
-- handle touch nothing, so a prefix-table notification (which flushes every cache) follows only a real change.

CREATE FUNCTION idnode_has_site(vals jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(bool_or(upper(v ->> 'type') IN ('HS_SITE', 'HS_SITE.PREFIX')), false)
      FROM jsonb_array_elements(CASE jsonb_typeof(vals) WHEN 'array' THEN vals ELSE '[]'::jsonb END) AS v
$$;

CREATE FUNCTION idnode_sync_delegation(key text, spelling text, delegated boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    SELECT kind INTO current FROM prefixes WHERE prefix_key = key;
    IF delegated AND current IS NULL THEN
        INSERT INTO prefixes (prefix_key, prefix, kind) VALUES (key, spelling, 'delegated');
    ELSIF NOT delegated AND current = 'delegated' THEN
        DELETE FROM prefixes WHERE prefix_key = key;
    END IF;
END $$;

CREATE FUNCTION idnode_delegations_written() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT substr(handle_key, 6) AS key, substr(handle, 6) AS spelling, idnode_has_site("values") AS site
               FROM new_rows WHERE handle_key LIKE '0.NA/_%'
    LOOP
        PERFORM idnode_sync_delegation(r.key, r.spelling, r.site);
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION idnode_delegations_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT substr(handle_key, 6) AS key FROM old_rows WHERE handle_key LIKE '0.NA/_%' LOOP
        PERFORM idnode_sync_delegation(r.key, NULL, false);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER handles_delegations_insert AFTER INSERT ON handles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_delegations_written();
CREATE TRIGGER handles_delegations_update AFTER UPDATE ON handles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_delegations_written();
CREATE TRIGGER handles_delegations_delete AFTER DELETE ON handles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_delegations_deleted();

-- Prefix handles already holding a site become delegations now.
SELECT idnode_sync_delegation(substr(handle_key, 6), substr(handle, 6), true)
  FROM handles WHERE handle_key LIKE '0.NA/_%' AND idnode_has_site("values");
