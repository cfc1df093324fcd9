-- idnode schema, version 7: the change feed (GET /api/changes, registry/feed.py).
--
-- Every change to homed data (handles, prefixes, enterprises, templates, operators, child nodes) is appended by
-- statement-level triggers (transition tables: one INSERT ... SELECT per statement, so a COPY import pays no
-- per-row trigger call) to change_pending, a queue numbered by a bigserial in write order. Handle changes point
-- at their handle_history row (whose values, version and actor the feed serves) instead of copying the values.
--
-- The sequencer, idnode_sequence_changes(), moves pending rows into change_feed and numbers them there. It runs
-- under a transaction-scoped advisory lock, so sequencers take turns, and in one statement (one snapshot). It can
-- only see, and so only moves, rows of transactions that have committed; a transaction still open keeps its
-- rows, and when it commits they are moved by a later run and numbered after everything moved before. Feed
-- numbers are therefore given in the order changes became visible, never to a change that can still vanish, and
-- a reader that has everything up to N will find every later change above N: nothing is skipped even when a
-- transaction that took a lower pending number commits after one that took a higher number. Rows of an aborted
-- transaction are never visible and never moved. Two changes of the same record are ordered by its row lock: the
-- second writer waits until the first has committed (and is visible), so the first is moved in the same run or
-- an earlier one and, within a run, rows move in pending order. This needs no waiting for unrelated long
-- transactions (an xmin horizon would stall the feed behind any open transaction on the server).
--
-- change_feed_state holds the last number given (numbers never go back, even when every row was pruned) and the
-- oldest number still kept (idnode feed prune). NOTIFY idnode_feed (payload empty) wakes long-polling readers
-- when a transaction that wrote pending rows commits.
--
-- Not fed: sessions, statistics, handle_search (derived from handles), a child node's reports (live status, not
-- configuration), and TRUNCATE (which bypasses history too). Data present before this migration is seeded as
-- 'create' entries (prefixes, enterprises, templates, operators, nodes, then handles at their latest history
-- row), so a follower starting from 0 can rebuild the whole state.

CREATE TABLE change_pending (
    raw_seq     bigserial PRIMARY KEY,
    kind        text NOT NULL,
    op          text NOT NULL,
    key         text NOT NULL,
    history_seq bigint,
    data        jsonb,
    actor       text,
    at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE change_feed (
    seq         bigint PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('handle', 'prefix', 'enterprise', 'template', 'operator', 'node')),
    op          text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    key         text NOT NULL,
    history_seq bigint,
    data        jsonb,
    actor       text,
    at          timestamptz NOT NULL
);

CREATE TABLE change_feed_state (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_seq bigint NOT NULL DEFAULT 0,
    oldest   bigint NOT NULL DEFAULT 1
);
INSERT INTO change_feed_state DEFAULT VALUES;

-- Who made a change: the writer's idnode.actor, else the row's created_by (a template published in one
-- statement names its publisher there), else the database user.
CREATE FUNCTION idnode_feed_actor(created_by text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('idnode.actor', true), ''), created_by, current_user)
$$;

CREATE FUNCTION idnode_feed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('idnode_feed', '');
    RETURN NULL;
END $$;

CREATE TRIGGER change_pending_notify AFTER INSERT ON change_pending
    FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_notify();

CREATE FUNCTION idnode_feed_handles() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_pending (kind, op, key, history_seq, actor, at)
        SELECT 'handle', op, handle_key, seq, actor, at FROM new_rows ORDER BY seq;
    RETURN NULL;
END $$;

CREATE TRIGGER handle_history_feed AFTER INSERT ON handle_history
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_handles();

-- The key of a row of the other fed tables; TG_ARGV[0] is the kind.
CREATE FUNCTION idnode_feed_key(kind text, r jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE kind
        WHEN 'template' THEN (r ->> 'prefix_key') || ' ' || (r ->> 'version')
        WHEN 'operator' THEN r ->> 'identity_key'
        ELSE r ->> 'prefix_key' END
$$;

CREATE FUNCTION idnode_feed_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    feed_kind text := TG_ARGV[0];
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO change_pending (kind, op, key, actor)
            SELECT feed_kind, 'delete', idnode_feed_key(feed_kind, to_jsonb(o)), idnode_feed_actor(NULL)
              FROM old_rows o;
    ELSE
        INSERT INTO change_pending (kind, op, key, data, actor)
            SELECT feed_kind, CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'update' END,
                   idnode_feed_key(feed_kind, to_jsonb(n)), to_jsonb(n), idnode_feed_actor(to_jsonb(n) ->> 'created_by')
              FROM new_rows n;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER prefixes_feed_insert AFTER INSERT ON prefixes
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('prefix');
CREATE TRIGGER prefixes_feed_update AFTER UPDATE ON prefixes
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('prefix');
CREATE TRIGGER prefixes_feed_delete AFTER DELETE ON prefixes
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('prefix');
CREATE TRIGGER enterprises_feed_insert AFTER INSERT ON enterprises
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('enterprise');
CREATE TRIGGER enterprises_feed_update AFTER UPDATE ON enterprises
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('enterprise');
CREATE TRIGGER enterprises_feed_delete AFTER DELETE ON enterprises
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('enterprise');
CREATE TRIGGER templates_feed_insert AFTER INSERT ON templates
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('template');
CREATE TRIGGER templates_feed_update AFTER UPDATE ON templates
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('template');
CREATE TRIGGER templates_feed_delete AFTER DELETE ON templates
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('template');
CREATE TRIGGER operators_feed_insert AFTER INSERT ON operators
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('operator');
CREATE TRIGGER operators_feed_update AFTER UPDATE ON operators
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('operator');
CREATE TRIGGER operators_feed_delete AFTER DELETE ON operators
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('operator');
CREATE TRIGGER nodes_feed_insert AFTER INSERT ON nodes
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('node');
CREATE TRIGGER nodes_feed_delete AFTER DELETE ON nodes
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_feed_rows('node');

-- Move up to max_rows committed pending rows into the feed, numbered in pending order; how many were moved.
CREATE FUNCTION idnode_sequence_changes(max_rows int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    base bigint;
    moved bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM change_pending) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(7594316296358279782);  -- int.from_bytes(b'idnode:f')
    -- a new statement, a new snapshot: what an earlier sequencer moved while this one waited is gone now
    SELECT last_seq INTO base FROM change_feed_state;
    WITH taken AS (
        DELETE FROM change_pending
         WHERE raw_seq IN (SELECT raw_seq FROM change_pending ORDER BY raw_seq LIMIT max_rows)
        RETURNING *
    )
    INSERT INTO change_feed (seq, kind, op, key, history_seq, data, actor, at)
        SELECT base + row_number() OVER (ORDER BY raw_seq), kind, op, key, history_seq, data, actor, at FROM taken;
    GET DIAGNOSTICS moved = ROW_COUNT;
    UPDATE change_feed_state SET last_seq = base + moved;
    RETURN moved;
END $$;

-- Seed: what exists now, as 'create' entries, so a follower from 0 rebuilds it.
INSERT INTO change_pending (kind, op, key, data, actor, at)
    SELECT 'prefix', 'create', prefix_key, to_jsonb(p), 'migration', created_at FROM prefixes p ORDER BY prefix_key;
INSERT INTO change_pending (kind, op, key, data, actor, at)
    SELECT 'enterprise', 'create', prefix_key, to_jsonb(e), 'migration', created_at FROM enterprises e ORDER BY id;
INSERT INTO change_pending (kind, op, key, data, actor, at)
    SELECT 'template', 'create', idnode_feed_key('template', to_jsonb(t)), to_jsonb(t), 'migration', created_at
      FROM templates t ORDER BY prefix_key, version;
INSERT INTO change_pending (kind, op, key, data, actor, at)
    SELECT 'operator', 'create', identity_key, to_jsonb(o), 'migration', created_at FROM operators o
     ORDER BY identity_key;
INSERT INTO change_pending (kind, op, key, data, actor, at)
    SELECT 'node', 'create', prefix_key, to_jsonb(n), 'migration', created_at FROM nodes n ORDER BY prefix_key;
INSERT INTO change_pending (kind, op, key, history_seq, actor, at)
    SELECT 'handle', 'create', h.handle_key, l.seq, l.actor, l.at
      FROM handles h
      CROSS JOIN LATERAL (SELECT seq, actor, at FROM handle_history x WHERE x.handle_key = h.handle_key
                           ORDER BY seq DESC LIMIT 1) l
     ORDER BY l.seq;
