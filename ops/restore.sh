#!/usr/bin/env bash
# Restore a backup into a NEW database and prove it whole: ops/restore.sh BACKUP_FILE TARGET_DATABASE_URL
#
# Refuses a target that already has tables. Checks the backup's SHA-256, restores in one transaction (all or
# nothing), brings the schema to the code's head (a no-op when the backup is from the same release), and runs
# `flask ledger verify` against it: every transaction balances and every balance equals its entries. Needs the same
# DATA_KEY the backed-up system used, so sealed fields can be read.
set -euo pipefail
backup="${1:?usage: ops/restore.sh BACKUP_FILE TARGET_DATABASE_URL}"
url="${2:?usage: ops/restore.sh BACKUP_FILE TARGET_DATABASE_URL}"
here="$(cd "$(dirname "$0")/.." && pwd)"
flask="${FLASK:-$here/.venv/bin/flask}"
libpq_url="${url/postgresql+psycopg:/postgresql:}"

if [ -f "$backup.sha256" ] && [ "$(sha256sum "$backup" | awk '{print $1}')" != "$(cat "$backup.sha256")" ]; then
  echo "restore: $backup does not match its SHA-256; refusing it" >&2
  exit 2
fi
tables=$(psql "$libpq_url" -tAc "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
if [ "$tables" != "0" ]; then
  echo "restore: the target database already has $tables tables; restore into a new, empty database" >&2
  exit 2
fi
pg_restore --no-owner --no-privileges --single-transaction --exit-on-error --dbname="$libpq_url" "$backup"
cd "$here"
DATABASE_URL="$url" "$flask" --app wsgi db upgrade
DATABASE_URL="$url" "$flask" --app wsgi ledger verify
echo "restored $backup into the target database; the ledger verifies"
