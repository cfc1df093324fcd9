-- idnode schema, version 3: inserts no longer run a row-level trigger.
--
-- The benchmark (python -m benchmarks, COPY import) measured the per-row plpgsql trigger at about half of an
-- import's cost. An inserted row gets its version from the column default (the same global sequence) and its
-- actor from a default that reads the writer's setting; only updates still need the row trigger, to take a
-- fresh version and keep created_at.

ALTER TABLE handles
    ALTER COLUMN updated_by SET DEFAULT coalesce(nullif(current_setting('idnode.actor', true), ''), current_user);

DROP TRIGGER handles_stamp_version ON handles;
CREATE TRIGGER handles_stamp_version BEFORE UPDATE ON handles
    FOR EACH ROW EXECUTE FUNCTION idnode_stamp_version();
