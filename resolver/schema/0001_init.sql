-- idnode schema, version 1: prefixes, handles, their history and the change feed.
--
-- Every change to a handle, whichever process or plain SQL session makes it, goes through the triggers below:
-- the row gets a fresh version from one global sequence (so versions keep growing across delete and re-create),
-- a history row is appended, and NOTIFY idnode_changes tells every node which cache entry to drop.
-- Writers name themselves with set_config('idnode.actor', ..., true) and set_config('idnode.request_id', ...).
--
-- Notification payloads on channel idnode_changes:
--   '<version> <handle_key>'  that handle changed (created, replaced or deleted) at that version
--   '-'                       many handles were created at once: drop every negative (absent) entry
--   '*'                       many handles changed at once: drop everything
--   'prefixes'                the prefix table changed: reload it and drop everything

CREATE SEQUENCE idnode_version_seq;

CREATE TABLE prefixes (
    prefix_key    text PRIMARY KEY,
    prefix        text NOT NULL,
    parent_key    text,
    kind          text NOT NULL DEFAULT 'homed' CHECK (kind IN ('homed', 'delegated')),
    delegate_url  text,
    enterprise_id bigint,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE handles (
    handle_key       text PRIMARY KEY,
    handle           text NOT NULL,
    prefix_key       text NOT NULL,
    "values"         jsonb NOT NULL,
    version          bigint NOT NULL DEFAULT nextval('idnode_version_seq'),
    template_version text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       text
);
CREATE INDEX handles_prefix_idx ON handles (prefix_key, handle_key);

CREATE TABLE handle_history (
    seq        bigserial PRIMARY KEY,
    handle_key text NOT NULL,
    handle     text NOT NULL,
    version    bigint NOT NULL,
    op         text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    actor      text,
    at         timestamptz NOT NULL DEFAULT now(),
    "values"   jsonb,
    request_id text
);
CREATE INDEX handle_history_key_idx ON handle_history (handle_key, seq);

CREATE FUNCTION idnode_stamp_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := nextval('idnode_version_seq');
    IF TG_OP = 'UPDATE' THEN
        NEW.created_at := OLD.created_at;
        NEW.updated_at := now();
    END IF;
    NEW.updated_by := coalesce(nullif(current_setting('idnode.actor', true), ''), NEW.updated_by, current_user);
    RETURN NEW;
END $$;

CREATE TRIGGER handles_stamp_version BEFORE INSERT OR UPDATE ON handles
    FOR EACH ROW EXECUTE FUNCTION idnode_stamp_version();

-- Statement-level triggers see every changed row at once through transition tables, so a COPY of a million
-- rows costs one history INSERT ... SELECT and one notification instead of a million trigger calls.
CREATE FUNCTION idnode_record_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    r record;
    actor text := nullif(current_setting('idnode.actor', true), '');
    rid text := nullif(current_setting('idnode.request_id', true), '');
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO n FROM old_rows;
        -- A deleted handle has no row left to carry a version, so its history row takes a fresh one.
        FOR r IN INSERT INTO handle_history (handle_key, handle, version, op, actor, "values", request_id)
                 SELECT handle_key, handle, nextval('idnode_version_seq'), 'delete',
                        coalesce(actor, current_user), NULL, rid
                   FROM old_rows
                 RETURNING handle_key, version
        LOOP
            IF n <= 1000 THEN
                PERFORM pg_notify('idnode_changes', r.version::text || ' ' || r.handle_key);
            END IF;
        END LOOP;
        IF n > 1000 THEN
            PERFORM pg_notify('idnode_changes', '*');
        END IF;
        RETURN NULL;
    END IF;
    INSERT INTO handle_history (handle_key, handle, version, op, actor, "values", request_id)
        SELECT handle_key, handle, version, CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'update' END,
               coalesce(actor, updated_by), "values", rid
          FROM new_rows;
    SELECT count(*) INTO n FROM new_rows;
    IF n > 1000 THEN
        PERFORM pg_notify('idnode_changes', CASE TG_OP WHEN 'INSERT' THEN '-' ELSE '*' END);
    ELSE
        PERFORM pg_notify('idnode_changes', version::text || ' ' || handle_key) FROM new_rows;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER handles_record_insert AFTER INSERT ON handles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_record_changes();
CREATE TRIGGER handles_record_update AFTER UPDATE ON handles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_record_changes();
CREATE TRIGGER handles_record_delete AFTER DELETE ON handles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_record_changes();

CREATE FUNCTION idnode_prefixes_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('idnode_changes', 'prefixes');
    RETURN NULL;
END $$;

CREATE TRIGGER prefixes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON prefixes
    FOR EACH STATEMENT EXECUTE FUNCTION idnode_prefixes_changed();
