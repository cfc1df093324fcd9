-- idnode schema, version 8: the mirror (DR node) state, registry/mirror.py.
--
-- A mirror follows its primary's change feed and applies each page of it in one transaction together with the
-- watermark below (the feed number of the last change applied), so a killed mirror resumes exactly where its
-- last committed page ended: no gap, no change applied twice. The row exists from the first page on; a node
-- without it is no mirror. taken_over_at is set by a takeover (idnode takeover, POST /api/takeover): from then on
-- the node is a primary, never follows again (a restart with mirror_of still set does not resume) and accepts
-- writes. Applied writes fire this node's own triggers: versions, history, search index and the node's own change
-- feed move forward in its own numbering, which is what a later mirror of this node follows.

CREATE TABLE mirror_state (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    source        text NOT NULL,
    watermark     bigint NOT NULL DEFAULT 0,
    applied_at    timestamptz,
    taken_over_at timestamptz
);

-- Apply one page of the primary's feed (its "changes" array, as received: jsonb keeps every number and string
-- exactly) if the watermark is still after and no takeover happened; whether it was applied. Handles are written
-- with the source's spelling, values and actor (the history trigger reads idnode.actor); other kinds carry their
-- table row, upserted whole on the kind's unique key or deleted by the feed's key.
CREATE FUNCTION idnode_mirror_apply(after bigint, changes jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    state record;
    c jsonb;
    tbl text;
    conflict text;
    cols text;
BEGIN
    SELECT watermark, taken_over_at INTO state FROM mirror_state FOR UPDATE;
    IF NOT FOUND OR state.watermark <> after OR state.taken_over_at IS NOT NULL THEN
        RETURN false;
    END IF;
    FOR c IN SELECT e FROM jsonb_array_elements(changes) WITH ORDINALITY AS x(e, n) ORDER BY n LOOP
        PERFORM set_config('idnode.actor', coalesce(c ->> 'actor', ''), true);
        IF c ->> 'kind' = 'handle' THEN
            IF c ->> 'op' = 'delete' THEN
                DELETE FROM handles WHERE handle_key = c ->> 'key';
            ELSE
                INSERT INTO handles (handle_key, handle, prefix_key, "values", updated_by, created_at, updated_at)
                    VALUES (c ->> 'key', c ->> 'handle', split_part(c ->> 'key', '/', 1), c -> 'values',
                            c ->> 'actor', (c ->> 'at')::timestamptz, (c ->> 'at')::timestamptz)
                    ON CONFLICT (handle_key) DO UPDATE
                    SET handle = EXCLUDED.handle, "values" = EXCLUDED."values", updated_by = EXCLUDED.updated_by;
            END IF;
            CONTINUE;
        END IF;
        SELECT t, k INTO tbl, conflict FROM (VALUES
            ('prefix', 'prefixes', 'prefix_key'), ('enterprise', 'enterprises', 'prefix_key'),
            ('template', 'templates', 'prefix_key, version'), ('operator', 'operators', 'identity_key'),
            ('node', 'nodes', 'prefix_key')) AS kinds(kind, t, k)
         WHERE kind = c ->> 'kind';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'mirror: unknown kind % in change %', c ->> 'kind', c ->> 'seq';
        END IF;
        IF c ->> 'op' = 'delete' THEN
            EXECUTE format('DELETE FROM %I t WHERE idnode_feed_key(%L, to_jsonb(t)) = $1', tbl, c ->> 'kind')
                USING c ->> 'key';
        ELSE
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
              FROM pg_attribute WHERE attrelid = tbl::regclass AND attnum > 0 AND NOT attisdropped;
            EXECUTE format('INSERT INTO %I SELECT * FROM jsonb_populate_record(NULL::%I, $1) '
                           'ON CONFLICT (%s) DO UPDATE SET (%s) = ROW(%s)',
                           tbl, tbl, conflict, cols, 'EXCLUDED.' || replace(cols, ', ', ', EXCLUDED.'))
                USING c -> 'data';
        END IF;
    END LOOP;
    IF jsonb_array_length(changes) > 0 THEN
        UPDATE mirror_state SET watermark = (changes -> -1 ->> 'seq')::bigint, applied_at = now();
    END IF;
    RETURN true;
END $$;
