-- idnode schema, version 2: the registry's tables (enterprises, operators, data templates) and the reverse
-- look-up index behind /hrls/handles.
--
-- Change notifications name each handle for statements of up to 5000 rows (a full batch of the batch API),
-- so only bulk loads beyond that flush caches.
--
-- handle_search holds, per handle, the public string values of the searchable types (search_types). It is kept
-- by the same statement-level triggers that write history, so every writer (REST, batch, COPY import, plain
-- SQL) keeps it right, and it never holds a value without public read permission (HS_SECKEY is 1100).

CREATE TABLE enterprises (
    id          bigserial PRIMARY KEY,
    prefix_key  text NOT NULL UNIQUE,
    name        text NOT NULL,
    credit_code text,
    contact     text,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text
);

CREATE TABLE operators (
    identity_key text PRIMARY KEY,
    identity     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE templates (
    prefix_key  text NOT NULL,
    prefix      text NOT NULL,
    version     text NOT NULL,
    description text,
    items       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text,
    PRIMARY KEY (prefix_key, version)
);

CREATE TABLE search_types (type_key text PRIMARY KEY);
INSERT INTO search_types VALUES ('URL'), ('CHECKSUM'), ('EMAIL');

CREATE TABLE handle_search (
    handle_key text NOT NULL,
    type_key   text NOT NULL,
    value      text NOT NULL
);
CREATE INDEX handle_search_value_idx ON handle_search (type_key, value text_pattern_ops);
CREATE INDEX handle_search_key_idx ON handle_search (handle_key);

CREATE OR REPLACE FUNCTION idnode_record_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    r record;
    actor text := nullif(current_setting('idnode.actor', true), '');
    rid text := nullif(current_setting('idnode.request_id', true), '');
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO n FROM old_rows;
        DELETE FROM handle_search s USING old_rows o WHERE s.handle_key = o.handle_key;
        -- A deleted handle has no row left to carry a version, so its history row takes a fresh one.
        FOR r IN INSERT INTO handle_history (handle_key, handle, version, op, actor, "values", request_id)
                 SELECT handle_key, handle, nextval('idnode_version_seq'), 'delete',
                        coalesce(actor, current_user), NULL, rid
                   FROM old_rows
                 RETURNING handle_key, version
        LOOP
            IF n <= 5000 THEN
                PERFORM pg_notify('idnode_changes', r.version::text || ' ' || r.handle_key);
            END IF;
        END LOOP;
        IF n > 5000 THEN
            PERFORM pg_notify('idnode_changes', '*');
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM handle_search s USING new_rows o WHERE s.handle_key = o.handle_key;
    END IF;
    INSERT INTO handle_search (handle_key, type_key, value)
        SELECT n.handle_key, upper(v->>'type'), v->'data'->>'value'
          FROM new_rows n, jsonb_array_elements(n."values") v
         WHERE v->'data'->>'format' = 'string'
           AND substr(coalesce(v->>'permissions', '1110'), 3, 1) = '1'
           AND upper(v->>'type') IN (SELECT type_key FROM search_types);
    INSERT INTO handle_history (handle_key, handle, version, op, actor, "values", request_id)
        SELECT handle_key, handle, version, CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'update' END,
               coalesce(actor, updated_by), "values", rid
          FROM new_rows;
    SELECT count(*) INTO n FROM new_rows;
    IF n > 5000 THEN
        PERFORM pg_notify('idnode_changes', CASE TG_OP WHEN 'INSERT' THEN '-' ELSE '*' END);
    ELSE
        PERFORM pg_notify('idnode_changes', version::text || ' ' || handle_key) FROM new_rows;
    END IF;
    RETURN NULL;
END $$;

INSERT INTO handle_search (handle_key, type_key, value)
    SELECT h.handle_key, upper(v->>'type'), v->'data'->>'value'
      FROM handles h, jsonb_array_elements(h."values") v
     WHERE v->'data'->>'format' = 'string'
       AND substr(coalesce(v->>'permissions', '1110'), 3, 1) = '1'
       AND upper(v->>'type') IN (SELECT type_key FROM search_types);

-- /api/sessions (challenge-response authentication). Kept in the database, not in a process, so a session
-- opened through one worker is known to every worker and every replica.
CREATE TABLE sessions (
    id         text PRIMARY KEY,
    nonce      bytea NOT NULL,
    identity   text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expires_at);
