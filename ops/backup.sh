#!/usr/bin/env bash
# Back up the platform's PostgreSQL database to one file: ops/backup.sh DATABASE_URL OUT_FILE
#
# A pg_dump in custom format (compressed, restorable table by table, taken in one snapshot, so the ledger's entries
# and balances agree with each other) and a SHA-256 of it next to it. DATA_KEY is NOT in the dump: keep it apart
# (a secret store), since the ID numbers, phones and bank accounts in the dump are sealed with it.
set -euo pipefail
url="${1:?usage: ops/backup.sh DATABASE_URL OUT_FILE}"
out="${2:?usage: ops/backup.sh DATABASE_URL OUT_FILE}"
url="${url/postgresql+psycopg:/postgresql:}"

pg_dump --format=custom --compress=6 --no-owner --no-privileges --file="$out.partial" "$url"
mv "$out.partial" "$out"
sha256sum "$out" | awk '{print $1}' > "$out.sha256"
echo "backed up to $out ($(du -h "$out" | cut -f1)), sha256 $(cat "$out.sha256")"
