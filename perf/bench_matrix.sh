#!/usr/bin/env bash
# The load-generator matrix of issue 4: `spate bench produce` against one bootstrap address, every
# cell's full `--json` report collected into perf/results/<date>-<target>.json.
#
# Usage: perf/bench_matrix.sh BOOTSTRAP TARGET [--duration 10s] [--cores 1] [--quick]
#   BOOTSTRAP  host:port of the broker to load (Spate, Kafka, Redpanda, ...), started beforehand;
#              for Spate on this 2-core machine: `taskset -c 0 spate serve --cores 1 --data-dir D`.
#   TARGET     a name for the broker in the results file name (e.g. spate-1core, kafka).
#   --duration each cell's length (default 10s); --cores the generator's cores (default 1: the
#              generator takes the last cores, so with 2 cores it runs on CPU 1);
#   --quick    only 1 KiB records, 16 partitions, acks 1 and all, and a 3-step rate sweep.
#
# Cells, in this order:
#   1. throughput: record sizes 100 B, 1 KiB, 16 KiB, 1 MiB x acks 1 and all x 1 and 16
#      partitions, at --rate max (a 1 MiB record gets a 2 MiB batch so a batch holds one);
#   2. latency: 1 KiB records, acks=1, 16 partitions, open loop at 10%, 25%, 50%, 75% and 90% of
#      the peak rate cell 1 measured for that configuration (latency from intended send times).
# Each partition count gets its own topic (bench-p1, bench-p16), because an existing topic keeps
# its partition count. Needs: cargo, jq. MB/s is 10^6 bytes of record values per second.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
bootstrap="$1"
target="$2"
shift 2
duration=10s
cores=1
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --cores) cores="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "bench_matrix: unknown flag $1" >&2; exit 2 ;;
  esac
done

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_dir"
command -v jq > /dev/null || { echo "bench_matrix: jq is needed" >&2; exit 1; }
cargo build --release --bin spate
spate="$repo_dir/target/release/spate"
work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT
results_dir="$repo_dir/perf/results"
mkdir -p "$results_dir"
out="$results_dir/$(date -u +%Y-%m-%d)-$target.json"

if [ "$quick" = 1 ]; then
  sizes=(1024); partition_counts=(16); rate_shares=(25 50 90)
else
  sizes=(100 1024 16384 1048576); partition_counts=(1 16); rate_shares=(10 25 50 75 90)
fi

cell=0
# Runs one cell; its report goes to $work_dir/<n>.json and its summary table to stderr.
run_cell() {
  cell=$((cell + 1))
  echo "bench_matrix: cell $cell: spate bench produce $*" >&2
  "$spate" bench produce --bootstrap "$bootstrap" --duration "$duration" --cores "$cores" \
    --json "$work_dir/$(printf %03d "$cell").json" "$@" > "$work_dir/$cell.log" 2>&1 \
    || { cat "$work_dir/$cell.log" >&2; echo "bench_matrix: cell $cell failed" >&2; }
  tail -n 6 "$work_dir/$cell.log" >&2
}

for size in "${sizes[@]}"; do
  batch=$((256 * 1024))
  [ "$size" -ge $((1024 * 1024)) ] && batch=$((2 * 1024 * 1024))
  for acks in 1 all; do
    for partitions in "${partition_counts[@]}"; do
      run_cell --topic "bench-p$partitions" --partitions "$partitions" --record-size "$size" \
        --acks "$acks" --batch-bytes "$batch"
    done
  done
done

# The peak of 1 KiB, acks=1, 16 partitions (or the widest partition count run) sets the sweep.
sweep_partitions="${partition_counts[-1]}"
peak="$(jq -s --argjson p "$sweep_partitions" '
  [.[] | select(.config.args.record_size == 1024 and .config.args.acks == 1
                and .config.partitions == $p) | .produced.records_per_s] | max // 0' \
  "$work_dir"/[0-9][0-9][0-9].json)"
for share in "${rate_shares[@]}"; do
  rate="$(jq -n --argjson peak "$peak" --argjson share "$share" '($peak * $share / 100) | floor')"
  [ "$rate" -gt 0 ] || continue
  run_cell --topic "bench-p$sweep_partitions" --partitions "$sweep_partitions" --record-size 1024 \
    --acks 1 --rate "$rate/s"
done

jq -s --arg target "$target" --arg bootstrap "$bootstrap" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg commit "$(git rev-parse --short HEAD)" \
  --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  '{target: $target, bootstrap: $bootstrap, date: $date, commit: $commit,
    load_average_at_end: $load, cells: .}' "$work_dir"/[0-9][0-9][0-9].json > "$out"

# A markdown table for perf/RESULTS.md.
echo
echo "| record | acks | partitions | rate | rec/s | MB/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
jq -r '.cells[] | [ .config.args.record_size, (if .config.args.acks == -1 then "all" else .config.args.acks end),
    .config.partitions, (.config.rate_per_second // "max"),
    (.produced.records_per_s | floor), (.produced.mb_per_s * 10 | floor / 10),
    (.produced.latency.p50_ms // "-"), (.produced.latency.p99_ms // "-"),
    (.produced.latency.p99_9_ms // "-"), (.produced.latency.max_ms // "-"), .errors ]
  | "| " + (map(tostring) | join(" | ")) + " |"' "$out"
echo
echo "bench_matrix: wrote $out" >&2
