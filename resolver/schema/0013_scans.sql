-- idnode schema, version 13: scan statistics (issue 13 item 7), per UTC day, handle and link type.
--
-- Every worker's recorder (registry/recorder.py) adds the proxy answers it counted since its last roll-up
-- (resolver/scans.py): INSERT ... ON CONFLICT DO UPDATE SET scans = scan_stats.scans + EXCLUDED.scans, so the
-- totals sum over workers and nodes on the database. link_type is "default" (the redirect to the record's URL),
-- "page" (its values page) or the typed link a client selected. handle_key is the handle's key (ASCII upper case),
-- or the lower-case overflow bucket "P/(other)" / "(other)" of a minute with more distinct handles than a worker
-- tells apart. prefix_key is the prefix it counts under (resolver/tallies.prefix_of_key), first in the key so
-- that one enterprise's range of days is one index range. No client address or time finer than the day is kept.

CREATE TABLE scan_stats (
    prefix_key text   NOT NULL,
    day        date   NOT NULL,
    handle_key text   NOT NULL,
    link_type  text   NOT NULL,
    scans      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (prefix_key, day, handle_key, link_type)
);

CREATE INDEX scan_stats_day_idx ON scan_stats (day);
