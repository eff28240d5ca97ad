#!/usr/bin/env bash
# Runs the Lambda functions locally under `cargo lambda watch` (the Lambda
# runtime and Invoke APIs on 127.0.0.1:$PORT) against a local bucket, and
# invokes each with the example events in functions/*/events/:
#   aether-store-lambda: StoreAPI payloads (info, series, label-names);
#   aether-compact-lambda, aether-rule-lambda: a scheduled event (one pass,
#                        one tick);
#   aether-query-lambda: Function URL events (instant query, labels, buildinfo),
#                        reading the bucket itself (the fan-out to store-read
#                        functions is exercised by functions/cli/tests/lambda.rs).
# The bucket: $OBJSTORE_CONFIG (a file), else RUN_DIR/bucket (filled by
# `make run`), else an empty one.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN_DIR="${1:-.aether}"
PORT="${LAMBDA_PORT:-9310}"
mkdir -p "$RUN_DIR"
if [ -n "${OBJSTORE_CONFIG:-}" ]; then
  objstore="$(cat "$OBJSTORE_CONFIG")"
else
  mkdir -p "$RUN_DIR/bucket"
  objstore="type: FILESYSTEM
config:
  directory: $(cd "$RUN_DIR/bucket" && pwd)"
fi
env_file="$RUN_DIR/lambda.env"
{
  # dotenv: one double-quoted line, newlines as \n.
  printf 'AETHER_OBJSTORE_CONFIG="%s"\n' "$(printf '%s' "$objstore" | sed ':a;N;$!ba;s/\n/\\n/g; s/"/\\"/g')"
  echo "AETHER_LOG_LEVEL=info"
  echo "AETHER_LABELS='replica=\"local\"'"
  echo "AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$PORT"
  echo "AWS_REGION=us-east-1"
  echo "AWS_ACCESS_KEY_ID=local"
  echo "AWS_SECRET_ACCESS_KEY=local"
} > "$env_file"

cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$PORT" --env-file "$env_file" > "$RUN_DIR/lambda-watch.log" 2>&1 &
watch_pid=$!
trap 'kill $watch_pid 2>/dev/null || true; wait $watch_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  kill -0 $watch_pid 2>/dev/null || { cat "$RUN_DIR/lambda-watch.log" >&2; exit 1; }
  (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.5
done

invoke() {
  local fn="$1" ev="$2"
  echo "== $fn < $ev"
  cargo lambda invoke "$fn" --invoke-address 127.0.0.1 --invoke-port "$PORT" --data-file "$ev" | head -c 2000
  echo
}
for ev in functions/store/events/*.json; do invoke aether-store-lambda "$ev"; done
for ev in functions/query/events/*.json; do invoke aether-query-lambda "$ev"; done
# One compaction pass and one rule tick (rules from the bucket's aether/rules/).
invoke aether-compact-lambda functions/compact/events/scheduled.json
invoke aether-rule-lambda functions/rule/events/scheduled.json
echo "logs: $RUN_DIR/lambda-watch.log"
