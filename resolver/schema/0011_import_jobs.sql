-- idnode schema, version 11: imports uploaded over HTTP (registry/import_api.py, registry/import_store.py).
--
-- POST /api/enterprises/{prefix}/imports spools a JSON Lines upload on the node that received it and imports it
-- there in the background (registry/bulk.py, all or nothing); this row is the job a client polls, so a poll served
-- by any worker or node of the database sees it. The process running a job writes its progress and heartbeat_at
-- about twice a second; a job whose heartbeat stopped for longer than the node's stale limit (its process died) is
-- marked failed by the next request that reads it. errors holds the first 100 line errors
-- ([{"line": N, "message": "..."}]), error_count all of them.

CREATE TABLE import_jobs (
    id           uuid PRIMARY KEY,
    prefix       text NOT NULL,
    prefix_key   text NOT NULL,
    actor        text NOT NULL,
    replace      boolean NOT NULL,
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'checking', 'writing', 'done', 'failed')),
    bytes        bigint NOT NULL,
    lines        bigint NOT NULL,
    checked      bigint NOT NULL DEFAULT 0,
    rows_total   bigint,
    rows_moved   bigint NOT NULL DEFAULT 0,
    written      bigint,
    skipped      bigint,
    error_count  bigint NOT NULL DEFAULT 0,
    errors       jsonb NOT NULL DEFAULT '[]',
    message      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

CREATE INDEX import_jobs_by_prefix ON import_jobs (prefix_key, created_at DESC);
CREATE INDEX import_jobs_running ON import_jobs (heartbeat_at) WHERE state IN ('queued', 'checking', 'writing');
