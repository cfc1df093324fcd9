#!/bin/sh
# Patroni's post_bootstrap hook (patroni.yml): runs once, on the host that initialised the cluster, with a
# superuser connection URL as $1. It creates the owner role (it runs `idnode migrate`) and the idnode database,
# then hands over to deploy/postgres/roles.sh for the runtime role the nodes connect as. Settings (pg1.env):
#   OWNER_ROLE, OWNER_PASSWORD, DATABASE_NAME, RUNTIME_ROLE, RUNTIME_PASSWORD
#   ROLES_SCRIPT             where roles.sh is (default /etc/patroni/roles.sh)
set -eu
superuser_url="$1"
owner="${OWNER_ROLE:-idnode_owner}"
database="${DATABASE_NAME:-idnode}"
psql -v ON_ERROR_STOP=1 -v owner="$owner" -v password="$OWNER_PASSWORD" -v database="$database" \
     "$superuser_url" <<'SQL'
CREATE ROLE :"owner" LOGIN CREATEROLE PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"owner";
SQL
# roles.sh connects as the owner, to the new database, over the superuser URL's host and port.
host_and_port=$(psql -At -v ON_ERROR_STOP=1 "$superuser_url" \
    -c "SELECT coalesce(host(inet_server_addr()), split_part(current_setting('unix_socket_directories'), ',', 1)),
               current_setting('port')")
PGHOST="${host_and_port%|*}" PGPORT="${host_and_port#*|}" PGPASSWORD="$OWNER_PASSWORD" \
    POSTGRES_USER="$owner" POSTGRES_DB="$database" \
    sh "${ROLES_SCRIPT:-/etc/patroni/roles.sh}"
