#!/bin/sh
# ROLE=primary: initialise once (user, database, a replication slot for the replica).
# ROLE=replica: once, pg_basebackup from PRIMARY_HOST through the slot; then stream.
# Both keep their data in the volume, so restarts of either side resume where they were.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
ROLE="${ROLE:-primary}"
SLOT="${REPLICATION_SLOT:-chat_replica}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ "$ROLE" = primary ]; then
    pwfile=$(mktemp) && printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U chat --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale
    rm -f "$pwfile"
    cat >> "$PGDATA/pg_hba.conf" <<HBA
host all all 0.0.0.0/0 scram-sha-256
host replication all 0.0.0.0/0 scram-sha-256
HBA
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    psql -v ON_ERROR_STOP=1 -U chat -d postgres -c "CREATE DATABASE chat OWNER chat" \
      -c "SELECT pg_create_physical_replication_slot('$SLOT')"
    pg_ctl -D "$PGDATA" -m fast -w stop
  else
    until pg_isready -h "$PRIMARY_HOST" -p 5432 -q; do echo "waiting for $PRIMARY_HOST"; sleep 1; done
    PGPASSWORD="$POSTGRES_PASSWORD" pg_basebackup -h "$PRIMARY_HOST" -U chat -D "$PGDATA" -R -X stream -S "$SLOT" --checkpoint=fast
    chmod 700 "$PGDATA"
  fi
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' -c wal_level=replica -c max_wal_senders=10 \
  -c max_replication_slots=10 -c hot_standby=on
