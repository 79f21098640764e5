#!/bin/sh
# Container entrypoint for labintake.
#
#   serve [OPTIONS]   migrate the database (unless LABINTAKE_MIGRATE_ON_START=false), then
#                     replace this shell with `labintake serve` so it receives the signals
#   migrate|send|users|tokens|codes|replay ...
#                     run that labintake command
#   anything else     run it as given (a shell for debugging, say)
#
# The migration is retried while the database is still starting (`labintake migrate` exits
# 75 when it cannot reach the database): LABINTAKE_MIGRATE_RETRIES attempts (default 30),
# LABINTAKE_MIGRATE_RETRY_SECONDS apart (default 2). Any other failure stops at once. Several instances starting together on one PostgreSQL may each migrate: the
# migration holds an advisory lock, so one migrates and the others find the schema current.
# (The compose file still runs it once, in its `migrate` service.)
set -eu

migrate_with_retries() {
    attempts=${LABINTAKE_MIGRATE_RETRIES:-30}
    pause=${LABINTAKE_MIGRATE_RETRY_SECONDS:-2}
    attempt=1
    while :; do
        status=0
        labintake migrate || status=$?
        if [ "$status" -eq 0 ]; then
            return 0
        fi
        if [ "$status" -ne 75 ]; then
            echo "entrypoint: migration failed (exit status $status); not starting" >&2
            return 1
        fi
        if [ "$attempt" -ge "$attempts" ]; then
            echo "entrypoint: migration failed after $attempt attempts; not starting" >&2
            return 1
        fi
        echo "entrypoint: database not reachable (attempt $attempt); retrying in ${pause}s" >&2
        attempt=$((attempt + 1))
        sleep "$pause"
    done
}

command=${1:-serve}
[ "$#" -gt 0 ] && shift

case "$command" in
    serve)
        if [ "${LABINTAKE_MIGRATE_ON_START:-true}" != "false" ]; then
            migrate_with_retries
        fi
        exec labintake serve "$@"
        ;;
    migrate)
        migrate_with_retries
        ;;
    send | users | tokens | codes | replay)
        exec labintake "$command" "$@"
        ;;
    *)
        exec "$command" "$@"
        ;;
esac
