#!/usr/bin/env bash
# `make run`: the whole Aether stack on one machine, over a local bucket.
#
# 1. Backfills a week of realistic demo history (a fleet of API servers) as TSDB
#    blocks into the bucket (a local directory, or the bucket of $OBJSTORE_CONFIG,
#    a Thanos objstore YAML file), with the external labels of the Prometheus below.
# 2. Starts Prometheus (scraping itself and every Aether component), the sidecar
#    next to it, a store over the bucket, the compactor (repeating passes) and the
#    querier, all on 127.0.0.1.
# 3. Prints the UI address. A query over the last 7 days answers from the bucket
#    (history) and the sidecar (fresh data) together. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
run_dir="$(realpath -m "${1:-.aether}")"
aether="$(realpath target/release/aether)"
mkdir -p "$run_dir"/{prometheus,store,compact,logs}

if [ -z "${OBJSTORE_CONFIG:-}" ]; then
  OBJSTORE_CONFIG="$run_dir/bucket.yml"
  printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$run_dir/bucket" > "$OBJSTORE_CONFIG"
fi

pids=()
stop() {
  echo; echo "==> stopping"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

start() { # name, then the command
  local name="$1"; shift
  "$@" > "$run_dir/logs/$name.log" 2>&1 &
  pids+=("$!")
  echo "    $name (pid $!, log $run_dir/logs/$name.log)"
}

wait_http() { # url
  for _ in $(seq 1 150); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "timed out waiting for $1" >&2
  return 1
}

blocks="$run_dir/demo-blocks"
if [ ! -f "$run_dir/.history-uploaded" ]; then
  rm -rf "$blocks"
  echo "==> backfilling 7 days of demo history (until 2h ago)"
  "$aether" tools demo-data --out "$blocks" --history 7d --until-ago 2h --interval 30s --instances 4
  echo "==> uploading it to the bucket ($OBJSTORE_CONFIG)"
  "$aether" --log.level=warn tools bucket upload-blocks --path "$blocks" --label cluster=demo --label replica=a \
    --objstore.config-file "$OBJSTORE_CONFIG" | tail -n 1
  touch "$run_dir/.history-uploaded"
fi

cat > "$run_dir/prometheus.yml" <<YAML
global:
  scrape_interval: 15s
  external_labels: {cluster: demo, replica: a}
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['127.0.0.1:9090']}]
  - job_name: aether
    static_configs:
      - targets: ['127.0.0.1:10902', '127.0.0.1:10912', '127.0.0.1:10922', '127.0.0.1:10932']
YAML

echo "==> starting the stack"
start prometheus prometheus --config.file="$run_dir/prometheus.yml" \
  --storage.tsdb.path="$run_dir/prometheus" --web.listen-address=127.0.0.1:9090 \
  --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h \
  --storage.tsdb.retention.time=15d --web.enable-lifecycle
wait_http http://127.0.0.1:9090/-/ready
start sidecar "$aether" sidecar --tsdb.path="$run_dir/prometheus" --prometheus.url=http://127.0.0.1:9090 \
  --objstore.config-file="$OBJSTORE_CONFIG" --grpc-address=127.0.0.1:10911 --http-address=127.0.0.1:10912
start store "$aether" store --objstore.config-file="$OBJSTORE_CONFIG" --data-dir="$run_dir/store" \
  --grpc-address=127.0.0.1:10921 --http-address=127.0.0.1:10922
start compact "$aether" compact --objstore.config-file="$OBJSTORE_CONFIG" --data-dir="$run_dir/compact" \
  --wait --wait-interval=5m --http-address=127.0.0.1:10932 \
  --retention.resolution-raw=30d --retention.resolution-5m=180d --retention.resolution-1h=1y
start query "$aether" query --http-address=127.0.0.1:10902 --grpc-address=127.0.0.1:10901 \
  --endpoint=127.0.0.1:10911 --endpoint=127.0.0.1:10921 --query.replica-label=replica
wait_http http://127.0.0.1:10902/-/ready

echo
echo "Aether is up: http://localhost:10902  (try: sum by (handler) (rate(http_requests_total[5m])) over the last 7d)"
echo "Prometheus: http://localhost:9090. Logs in $run_dir/logs. Ctrl-C stops everything."
if [ -n "${AETHER_RUN_ONCE:-}" ]; then
  # For a smoke check: answer one query over the week, then stop.
  curl -sf "http://127.0.0.1:10902/api/v1/query?query=count(count_over_time(http_requests_total%5B7d%5D))" && echo
  exit 0
fi
wait -n "${pids[@]}" || true
echo "a component exited; see $run_dir/logs" >&2
exit 1
