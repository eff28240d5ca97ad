#!/usr/bin/env bash
# `make run`: the whole Aether stack on one machine, over a local bucket.
#
# 1. Backfills a week of realistic demo history (a fleet of API servers) as TSDB
#    blocks into the bucket (a local directory, or the bucket of $OBJSTORE_CONFIG,
#    a Thanos objstore YAML file), with the external labels of the Prometheus below.
# 2. Starts Prometheus (scraping itself and every Aether component), the sidecar
#    next to it, a store over the bucket, the compactor (repeating passes), the
#    querier, and the ruler (tests/scripts/demo-rules.yaml, evaluated through the
#    querier, its results served to the querier over the StoreAPI and shipped to
#    the bucket), plus an Alertmanager for the ruler's alerts when
#    prometheus-alertmanager is installed; all on 127.0.0.1.
# 3. Prints the addresses. A query over the last 7 days answers from the bucket
#    (history) and the sidecar (fresh data) together; recorded series (e.g.
#    job:up:sum) answer through the querier as soon as the ruler evaluated them.
#    Ctrl-C stops everything.
#
# AETHER_RUN_ONCE=1: a smoke check instead of staying up: one query over the
# week, a recorded series through the querier, the rules through the querier.
set -euo pipefail
cd "$(dirname "$0")/../.."
run_dir="$(realpath -m "${1:-.aether}")"
aether="$(realpath target/release/aether)"
rules="$(realpath tests/scripts/demo-rules.yaml)"
mkdir -p "$run_dir"/{prometheus,store,compact,rule,alertmanager,logs}

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
      - targets: ['127.0.0.1:10902', '127.0.0.1:10912', '127.0.0.1:10922', '127.0.0.1:10932', '127.0.0.1:10942']
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
# The querier reads the ruler's recorded series over its StoreAPI (10941) and
# its rules and alerts over its HTTP API (10942).
start query "$aether" query --http-address=127.0.0.1:10902 --grpc-address=127.0.0.1:10901 \
  --endpoint=127.0.0.1:10911 --endpoint=127.0.0.1:10921 --endpoint=127.0.0.1:10941 \
  --query.replica-label=replica --rule.url=http://127.0.0.1:10942
wait_http http://127.0.0.1:10902/-/ready

alertmanager_url=""
am_flags=()
if command -v prometheus-alertmanager >/dev/null 2>&1; then
  printf 'route:\n  receiver: "null"\n  group_wait: 10s\nreceivers:\n  - name: "null"\n' > "$run_dir/alertmanager.yml"
  start alertmanager prometheus-alertmanager --config.file="$run_dir/alertmanager.yml" \
    --storage.path="$run_dir/alertmanager" --web.listen-address=127.0.0.1:9093 --cluster.listen-address=
  alertmanager_url=http://127.0.0.1:9093
  am_flags=(--alertmanagers.url="$alertmanager_url")
fi
start rule "$aether" rule --rule-file="$rules" --query=http://127.0.0.1:10902 ${am_flags[@]+"${am_flags[@]}"} \
  --label='ruler="demo"' --label='replica="r0"' --eval-interval=15s \
  --objstore.config-file="$OBJSTORE_CONFIG" --data-dir="$run_dir/rule" \
  --grpc-address=127.0.0.1:10941 --http-address=127.0.0.1:10942
wait_http http://127.0.0.1:10942/-/ready
if [ -n "$alertmanager_url" ]; then wait_http "$alertmanager_url/-/ready"; fi

echo
echo "Aether is up: http://localhost:10902  (try: sum by (handler) (rate(http_requests_total[5m])) over the last 7d)"
echo "Prometheus:   http://localhost:9090"
echo "Ruler:        http://localhost:10942/api/v1/rules  (rules: $rules; also at http://localhost:10902/api/v1/rules)"
if [ -n "$alertmanager_url" ]; then
  echo "Alertmanager: http://localhost:9093"
else
  echo "Alertmanager: not started (prometheus-alertmanager is not installed; make deps installs it)"
fi
echo "Logs in $run_dir/logs. Ctrl-C stops everything."
if [ -n "${AETHER_RUN_ONCE:-}" ]; then
  # For a smoke check: answer one query over the week, then a recorded series
  # through the querier (the ruler evaluates every 15 s once Prometheus has
  # scraped), and the ruler's rules through the querier; then stop.
  answer() { # query (URL-encoded), seconds: wait until it has a result, print it
    local out
    for _ in $(seq 1 "$2"); do
      out="$(curl -s "http://127.0.0.1:10902/api/v1/query?query=$1" || true)"
      case "$out" in *'"result":[{'*) echo "$out"; return 0 ;; esac
      sleep 1
    done
    echo "no answer to $1 through the querier in $2 s; last: $out (logs in $run_dir/logs)" >&2
    return 1
  }
  answer 'count(count_over_time(http_requests_total%5B7d%5D))' 60
  answer 'job:up:sum' 120
  rules_json="$(curl -s http://127.0.0.1:10902/api/v1/rules?type=record || true)"
  case "$rules_json" in
    *'"name":"job:up:sum"'*) echo "rules through the querier: ok" ;;
    *) echo "the querier's /api/v1/rules lacks the ruler's rules: $rules_json" >&2; exit 1 ;;
  esac
  exit 0
fi
wait -n "${pids[@]}" || true
echo "a component exited; see $run_dir/logs" >&2
exit 1
