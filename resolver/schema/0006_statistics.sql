-- idnode schema, version 6: operation statistics (运营统计) and the child nodes of the hierarchy.
--
-- lookup_stats: look-ups per UTC day and prefix key by outcome, as this node's workers (and any other node on
-- the same database) counted them. Each worker adds what it counted since its last roll-up
-- (registry/recorder.py: INSERT ... ON CONFLICT DO UPDATE SET x = lookup_stats.x + EXCLUDED.x), so the totals
-- sum over workers and nodes.
--
-- Registrations are not counted twice: they are computed from the append-only handle_history (create, update,
-- delete per UTC day), which the index on "at" makes a range scan; idnode_prefix_of(key) is the prefix a handle
-- key counts under (P for the prefix handle 0.NA/P, as resolver/tallies.prefix_of_key).
--
-- nodes: the child nodes created by `idnode node add` (registry/nodes.py): the identity 300:0.NA/<prefix>, and
-- what its last report said. node_stats: the daily totals a child reported, kept apart from this node's own
-- counts; a child reports absolute totals, so a row is replaced, never added to.

CREATE TABLE lookup_stats (
    day        date   NOT NULL,
    prefix_key text   NOT NULL,
    hit        bigint NOT NULL DEFAULT 0,
    miss       bigint NOT NULL DEFAULT 0,
    not_found  bigint NOT NULL DEFAULT 0,
    forwarded  bigint NOT NULL DEFAULT 0,
    stale      bigint NOT NULL DEFAULT 0,
    error      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, prefix_key)
);

CREATE INDEX handle_history_at_idx ON handle_history (at);

CREATE FUNCTION idnode_prefix_of(key text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN split_part(key, '/', 1) = '0.NA' AND split_part(key, '/', 2) <> ''
                THEN substr(key, 6) ELSE split_part(key, '/', 1) END
$$;

CREATE TABLE nodes (
    prefix_key text PRIMARY KEY,
    prefix     text NOT NULL,
    name       text NOT NULL,
    identity   text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text,
    last_seen  timestamptz,
    report     jsonb
);

CREATE TABLE node_stats (
    node_key   text   NOT NULL REFERENCES nodes (prefix_key) ON DELETE CASCADE,
    day        date   NOT NULL,
    prefix_key text   NOT NULL,
    hit        bigint NOT NULL DEFAULT 0,
    miss       bigint NOT NULL DEFAULT 0,
    not_found  bigint NOT NULL DEFAULT 0,
    forwarded  bigint NOT NULL DEFAULT 0,
    stale      bigint NOT NULL DEFAULT 0,
    error      bigint NOT NULL DEFAULT 0,
    created    bigint NOT NULL DEFAULT 0,
    updated    bigint NOT NULL DEFAULT 0,
    deleted    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (node_key, day, prefix_key)
);
