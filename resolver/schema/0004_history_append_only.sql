-- idnode schema, version 4: handle history is append-only, and an import can tell an unchanged record.
--
-- History is the audit trail of every registration (who changed what, when, under which request id), so the
-- node must not be able to rewrite it: UPDATE, DELETE and TRUNCATE of handle_history are refused by a trigger,
-- whoever asks (statement-level, so even a statement that would touch no row is refused). Only the history
-- triggers write to it, and only by INSERT. Where the deployment allows it, the node also runs as a role that
-- lacks these rights in the first place (README, "Database roles"): the rights granted to any role but the
-- table's owner are revoked here, so default privileges given to a runtime role do not reach this table.
--
-- idnode_untimed(values): a record's values without their timestamps. Every write stamps the values it stores,
-- so two stampings of the same content differ only there; `idnode import --replace` compares with it and
-- leaves a record that did not change untouched (no new version, no history row, no notification).

CREATE FUNCTION idnode_refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'handle_history is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'history rows are written by the handles triggers and never changed';
END $$;

CREATE TRIGGER handle_history_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON handle_history
    FOR EACH STATEMENT EXECUTE FUNCTION idnode_refuse_history_change();

DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
         WHERE g.table_schema = current_schema() AND g.table_name = 'handle_history'
           AND g.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')
           AND g.grantee NOT IN (SELECT pg_get_userbyid(relowner) FROM pg_class
                                  WHERE oid = 'handle_history'::regclass)
    LOOP
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON handle_history FROM %s',
                       CASE grantee WHEN 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(grantee) END);
    END LOOP;
END $$;

CREATE FUNCTION idnode_untimed(vals jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_agg(v - 'timestamp' ORDER BY n), '[]'::jsonb)
      FROM jsonb_array_elements(vals) WITH ORDINALITY AS t(v, n)
$$;
