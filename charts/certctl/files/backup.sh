#!/bin/sh
# certctl database backup. Runs in the chart's backup CronJob and, unchanged, in
# scripts/chart-check.sh against a local PostgreSQL. Everything comes from the environment:
#
#   connection   PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (libpq's own variables), or
#                BACKUP_DATABASE_URL (postgres://...), which wins when set
#   BACKUP_DIR   directory the dump is written to (required); the temp file is created in this
#                same directory, so the final rename is atomic (never across filesystems)
#   BACKUP_RETENTION   dumps to keep, newest first (default 14; 0 keeps all)
#   BACKUP_S3_BUCKET, BACKUP_S3_PREFIX, BACKUP_S3_ENDPOINT   for the upload step
#   (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION are read by the aws CLI)
#
# Usage: backup.sh [dump|upload]
#   dump    pg_dump --format=custom --no-owner --no-acl into BACKUP_DIR, verified with
#           pg_restore --list before it gets its final name certctl-YYYYMMDDTHHMMSSZ.dump (UTC),
#           then keeps the newest BACKUP_RETENTION dumps in BACKUP_DIR
#   upload  copies the dumps in BACKUP_DIR to s3://BACKUP_S3_BUCKET/BACKUP_S3_PREFIX with the aws
#           CLI and keeps the newest BACKUP_RETENTION there
# Output: the path (dump) or URL (upload) of each dump kept, one per line, on stdout.
set -eu

die() {
    echo "backup: $*" >&2
    exit 1
}

: "${BACKUP_DIR:?BACKUP_DIR is not set: the directory dumps are written to}"
retention=${BACKUP_RETENTION:-14}
case "$retention" in
    '' | *[!0-9]*) die "BACKUP_RETENTION=$retention: expected a whole number (0 keeps all)" ;;
esac
[ -d "$BACKUP_DIR" ] || die "BACKUP_DIR=$BACKUP_DIR is not a directory"

# Names of the dumps, oldest first (the UTC timestamp in the name sorts by time).
list_local() {
    for f in "$BACKUP_DIR"/certctl-*.dump; do
        [ -f "$f" ] || continue
        name=${f##*/}
        case "$name" in
            certctl-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.dump) echo "$name" ;;
        esac
    done | sort
}

dump() {
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    final="$BACKUP_DIR/certctl-$stamp.dump"
    [ -e "$final" ] && die "$final exists already (two backups in the same second?)"
    # Leftovers of a run that was killed (SIGKILL gives no chance to clean up).
    rm -f "$BACKUP_DIR"/.certctl-*.dump.partial
    tmp="$BACKUP_DIR/.certctl-$stamp.dump.partial"
    trap 'rm -f "$tmp"' EXIT
    trap 'exit 1' INT TERM
    if [ -n "${BACKUP_DATABASE_URL:-}" ]; then
        pg_dump --format=custom --no-owner --no-acl --file="$tmp" --dbname="$BACKUP_DATABASE_URL"
    else
        pg_dump --format=custom --no-owner --no-acl --file="$tmp"
    fi
    # A dump that pg_restore cannot read is not a backup.
    listing=$(pg_restore --list "$tmp") || die "pg_restore --list cannot read the dump: not kept"
    entries=$(printf '%s\n' "$listing" | grep -c -v -e '^;' -e '^$' || true)
    [ "$entries" -gt 0 ] || die "pg_restore --list found no entries in the dump: not kept"
    # On disk before it gets its name, then the rename (same directory: atomic).
    sync "$tmp" 2>/dev/null || sync
    mv -- "$tmp" "$final"
    trap - EXIT
    echo "backup: $final ($(wc -c <"$final") bytes, $entries entries)" >&2
    echo "$final"
    if [ "$retention" -gt 0 ]; then
        count=$(list_local | wc -l)
        excess=$((count - retention))
        if [ "$excess" -gt 0 ]; then
            list_local | head -n "$excess" | while read -r old; do
                rm -f -- "$BACKUP_DIR/$old"
                echo "backup: removed $old (keeping $retention)" >&2
            done
        fi
    fi
}

upload() {
    : "${BACKUP_S3_BUCKET:?BACKUP_S3_BUCKET is not set}"
    prefix=${BACKUP_S3_PREFIX:-}
    set --
    [ -n "${BACKUP_S3_ENDPOINT:-}" ] && set -- --endpoint-url "$BACKUP_S3_ENDPOINT"
    names=$(list_local)
    [ -n "$names" ] || die "no dump in $BACKUP_DIR to upload"
    for name in $names; do
        aws "$@" s3 cp --only-show-errors "$BACKUP_DIR/$name" "s3://$BACKUP_S3_BUCKET/$prefix$name"
        echo "s3://$BACKUP_S3_BUCKET/$prefix$name"
    done
    if [ "$retention" -gt 0 ]; then
        remote=$(aws "$@" s3 ls "s3://$BACKUP_S3_BUCKET/$prefix" |
            awk '{print $4}' |
            grep -E '^certctl-[0-9]{8}T[0-9]{6}Z\.dump$' | sort || true)
        count=$(printf '%s\n' "$remote" | grep -c . || true)
        excess=$((count - retention))
        if [ "$excess" -gt 0 ]; then
            for old in $(printf '%s\n' "$remote" | head -n "$excess"); do
                aws "$@" s3 rm --only-show-errors "s3://$BACKUP_S3_BUCKET/$prefix$old"
                echo "backup: removed s3://$BACKUP_S3_BUCKET/$prefix$old (keeping $retention)" >&2
            done
        fi
    fi
}

case "${1:-dump}" in
    dump) dump ;;
    upload) upload ;;
    *) die "usage: backup.sh [dump|upload]" ;;
esac
