#!/bin/sh
# The primary's replication login, for its streaming standby (deploy/compose.ha.yaml). Run once
# by the postgres image when it makes the data folder (/docker-entrypoint-initdb.d/).
set -eu
echo "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';" \
  | psql -v ON_ERROR_STOP=1 -v password="$REPLICATION_PASSWORD" \
      --username "$POSTGRES_USER" --dbname "$POSTGRES_DB"
# Replication connections match no database line ("all" excludes them): their own, by password.
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
