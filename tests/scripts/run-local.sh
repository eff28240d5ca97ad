#!/usr/bin/env bash
# `make run`: what Aether can do so far, on one machine, over a local bucket.
# Backfills a week of realistic demo history (a fleet of API servers) as TSDB
# blocks, uploads them to a FILESYSTEM bucket (or the bucket of $OBJSTORE_CONFIG,
# a Thanos objstore YAML file), then shows what is in the bucket and how a
# block looks. The servers (sidecar, store, query, ...) join as they are built.
set -euo pipefail
cd "$(dirname "$0")/../.."
run_dir="${1:-.aether}"
aether="target/release/aether"
mkdir -p "$run_dir"

if [ -z "${OBJSTORE_CONFIG:-}" ]; then
  OBJSTORE_CONFIG="$run_dir/bucket.yml"
  printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$(realpath "$run_dir")/bucket" > "$OBJSTORE_CONFIG"
fi

blocks="$run_dir/demo-blocks"
rm -rf "$blocks"
echo "==> backfilling 7 days of demo history into $blocks"
"$aether" tools demo-data --out "$blocks" --history 7d --until-ago 2h --interval 30s --instances 4

echo "==> uploading the blocks to the bucket ($OBJSTORE_CONFIG)"
"$aether" tools bucket upload-blocks --path "$blocks" --label cluster=demo --label replica=a \
  --objstore.config-file "$OBJSTORE_CONFIG"

echo "==> the bucket"
"$aether" tools bucket ls --objstore.config-file "$OBJSTORE_CONFIG" | tail -n 5

newest="$(ls -d "$blocks"/*/ | sort | tail -n 1)"
echo "==> the newest block, analyzed"
"$aether" tools tsdb analyze --block "$newest" --limit 5
echo "==> its up series, as promtool tsdb dump would print them (first lines)"
"$aether" tools tsdb dump --block "$newest" --match 'up' | head -n 5
echo
echo "Aether so far: blocks in $run_dir/bucket. The query UI (http://localhost:10902) arrives with the querier."
