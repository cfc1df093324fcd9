-- idnode schema, version 14: class fallback (issue 13 item 4, resolver/classes.py). A class record declares the
-- serials it stands for with IDNODE_CLASS_PATTERN values (e.g. 'PUMP-CP40-{serial}'); this table indexes them so that
-- every node can hold all patterns in memory and find the class of an unregistered serial without a query.
--
-- The triggers below keep the table equal to what the handles' values say, whoever writes them (PUT, batch, import,
-- plain SQL, a mirror's copy). A pattern is keyed by its prefix and its literal text before and after the
-- placeholder ('PUMP-CP40-', ''), ASCII upper-cased as handle keys are; two classes may not hold the same key: the
-- write that would is refused with unique_violation on constraint 'idnode_class_pattern' (the write paths answer 409
-- rc 201, resolver/errors.py refusal_of). A pattern text with '/' before its placeholder names its prefix
-- ('88.118.8/PUMP-CP40-{serial}'): the part before the first '/' is dropped here; the write path has checked it is
-- the record's own prefix. Texts without a '{...}' placeholder are not indexed (the write path refuses them; SQL
-- may still store one). Any change to the table notifies 'classes' on idnode_changes (reload the pattern index).

CREATE TABLE class_patterns (
    class_key    text NOT NULL,
    class_handle text NOT NULL,
    prefix_key   text NOT NULL,
    head         text NOT NULL,
    tail         text NOT NULL,
    pattern      text NOT NULL
);
CREATE UNIQUE INDEX idnode_class_pattern ON class_patterns (prefix_key, head, tail);
CREATE INDEX class_patterns_class_idx ON class_patterns (class_key);

CREATE FUNCTION idnode_class_pattern_rows(vals jsonb)
RETURNS TABLE (head text, tail text, pattern text) LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT ON (1, 2) upper(split_part(p, '{', 1)), upper(split_part(p, '}', 2)), p
      FROM (SELECT CASE WHEN strpos(split_part(t, '{', 1), '/') > 0 THEN substr(t, strpos(t, '/') + 1) ELSE t END
              FROM (SELECT v -> 'data' ->> 'value'
                      FROM jsonb_array_elements(CASE jsonb_typeof(vals) WHEN 'array' THEN vals ELSE '[]'::jsonb END) v
                     WHERE upper(v ->> 'type') = 'IDNODE_CLASS_PATTERN' AND v -> 'data' ->> 'format' = 'string') s(t)
             WHERE t LIKE '%{%}%') q(p)
$$;

-- Whether a record's values hold a class pattern: the test every written row goes through, so it reads the types
-- of the jsonb array (about 8 us per 1.1 KB record) instead of matching the record's text (about 33 us: the jsonb is
-- printed first), which cost a 100,000-row COPY a quarter of its rate.
CREATE FUNCTION idnode_has_class_pattern(vals jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT EXISTS (SELECT 1
                     FROM jsonb_array_elements(CASE jsonb_typeof(vals) WHEN 'array' THEN vals ELSE '[]'::jsonb END) v
                    WHERE upper(v ->> 'type') = 'IDNODE_CLASS_PATTERN')
$$;

CREATE FUNCTION idnode_class_patterns_written() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    removed bigint := 0;
    added bigint := 0;
    clash record;
BEGIN
    IF EXISTS (SELECT 1 FROM class_patterns) THEN
        DELETE FROM class_patterns c USING new_rows n WHERE c.class_key = n.handle_key;
        GET DIAGNOSTICS removed = ROW_COUNT;
    END IF;
    IF EXISTS (SELECT 1 FROM new_rows WHERE idnode_has_class_pattern("values")) THEN
        SELECT p.pattern, c.class_handle INTO clash
          FROM new_rows n, idnode_class_pattern_rows(n."values") p, class_patterns c
         WHERE idnode_has_class_pattern(n."values")
           AND c.prefix_key = n.prefix_key AND c.head = p.head AND c.tail = p.tail
         LIMIT 1;
        IF NOT FOUND THEN  -- two records of this statement claiming one pattern
            SELECT min(p.pattern) AS pattern, min(n.handle) AS class_handle INTO clash
              FROM new_rows n, idnode_class_pattern_rows(n."values") p
             WHERE idnode_has_class_pattern(n."values")
             GROUP BY n.prefix_key, p.head, p.tail HAVING count(*) > 1
             LIMIT 1;
        END IF;
        IF FOUND THEN
            RAISE EXCEPTION 'Class pattern % already belongs to %', clash.pattern, clash.class_handle
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'idnode_class_pattern';
        END IF;
        INSERT INTO class_patterns
            SELECT n.handle_key, n.handle, n.prefix_key, p.head, p.tail, p.pattern
              FROM new_rows n, idnode_class_pattern_rows(n."values") p
             WHERE idnode_has_class_pattern(n."values");
        GET DIAGNOSTICS added = ROW_COUNT;
    END IF;
    IF removed + added > 0 THEN
        PERFORM pg_notify('idnode_changes', 'classes');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION idnode_class_patterns_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    removed bigint := 0;
BEGIN
    IF EXISTS (SELECT 1 FROM class_patterns) THEN
        DELETE FROM class_patterns c USING old_rows o WHERE c.class_key = o.handle_key;
        GET DIAGNOSTICS removed = ROW_COUNT;
    END IF;
    IF removed > 0 THEN
        PERFORM pg_notify('idnode_changes', 'classes');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER handles_class_patterns_insert AFTER INSERT ON handles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_class_patterns_written();
CREATE TRIGGER handles_class_patterns_update AFTER UPDATE ON handles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_class_patterns_written();
CREATE TRIGGER handles_class_patterns_delete AFTER DELETE ON handles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION idnode_class_patterns_deleted();

INSERT INTO class_patterns
    SELECT h.handle_key, h.handle, h.prefix_key, p.head, p.tail, p.pattern
      FROM handles h, idnode_class_pattern_rows(h."values") p
     WHERE idnode_has_class_pattern(h."values");
