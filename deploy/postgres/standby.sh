#!/bin/sh
# A streaming standby of the service `postgres` (deploy/compose.ha.yaml): on an empty data
# folder, a copy of the primary made by pg_basebackup -R (which writes standby.signal and the
# primary's connection, named `standby`: the name the primary waits for, synchronous_standby_names),
# then the image's own start. A data folder already there (a restart) is started as it is.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chown postgres "$PGDATA"
  chmod 700 "$PGDATA"
  until gosu postgres pg_basebackup -D "$PGDATA" -R -X stream \
      -d "host=postgres user=replicator application_name=standby"; do
    echo "standby: waiting for the primary"
    rm -rf "${PGDATA:?}"/*
    sleep 2
  done
fi
exec docker-entrypoint.sh postgres
