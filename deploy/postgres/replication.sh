#!/bin/sh
# The primary's side of streaming replication (docker-compose.replicas.yml runs this once, when the database is
# first created, from /docker-entrypoint-initdb.d/): a `replicator` role that may stream WAL and nothing else,
# and a pg_hba.conf line that lets it in with its password. The image's defaults already suit a primary
# (wal_level=replica, max_wal_senders=10); the WAL kept for a replica that falls behind is raised.
#   REPLICATION_PASSWORD     the replicator's password (postgres/replica.sh uses the same)
set -eu
psql -v ON_ERROR_STOP=1 -v password="$REPLICATION_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
ALTER SYSTEM SET wal_keep_size = '1GB';
ALTER SYSTEM SET hot_standby_feedback = 'on';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
