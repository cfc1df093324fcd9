#!/bin/sh
# A hot standby of $PRIMARY_HOST (docker-compose.replicas.yml): on first start the data directory is cloned with
# pg_basebackup -R (which also writes the connection to follow into postgresql.auto.conf and standby.signal);
# every start then runs the server as a read-only standby that replays the primary's WAL as it streams in.
#   PRIMARY_HOST, REPLICATION_PASSWORD     where to clone from, as the replicator role (postgres/replication.sh)
#   PGDATA                                 the data directory (the image's default)
set -eu
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # The primary may still be running its init scripts: retry until the replicator role exists.
    until PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup --host "$PRIMARY_HOST" --username replicator \
            --pgdata "$PGDATA" --write-recovery-conf --wal-method stream --checkpoint fast; do
        rm -rf "${PGDATA:?}"/*
        sleep 2
    done
    chmod 0700 "$PGDATA"
fi
exec postgres -D "$PGDATA" -c hot_standby=on -c max_standby_streaming_delay=5s
