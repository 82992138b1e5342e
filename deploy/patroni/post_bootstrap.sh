#!/bin/sh
# Run once by Patroni on the node that made the cluster (bootstrap.post_bootstrap): the
# application's login and database. $1 is Patroni's connection string as the superuser; the
# password comes from the environment, never the command line.
set -eu
psql -v ON_ERROR_STOP=1 -v password="$MAILPROBE_DB_PASSWORD" "$1" <<'SQL'
CREATE ROLE mailprobe LOGIN PASSWORD :'password';
CREATE DATABASE mailprobe OWNER mailprobe;
SQL
