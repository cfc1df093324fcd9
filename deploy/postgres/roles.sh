#!/bin/sh
# The node's runtime role, for a PostgreSQL whose schema an owner role holds (README, "History is append-only").
# Docker Compose runs this once, when the database is first created (/docker-entrypoint-initdb.d/); elsewhere run
# it by hand as the owner, with the same variables:
#   POSTGRES_USER / POSTGRES_DB     the owner role (it runs `idnode migrate`) and the database
#   RUNTIME_ROLE             the role the node connects as (default: idnode)
#   RUNTIME_PASSWORD         its password
# The runtime role may read and write handles, but gets no right to create tables, and the migrations revoke
# UPDATE, DELETE and TRUNCATE on handle_history from every role but the owner: the node cannot rewrite history.
set -eu
role="${RUNTIME_ROLE:-idnode}"
psql -v ON_ERROR_STOP=1 -v role="$role" -v password="$RUNTIME_PASSWORD" -v owner="$POSTGRES_USER" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO :"role";
SQL
