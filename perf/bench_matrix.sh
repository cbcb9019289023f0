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
#      partitions, at --rate max (1 MiB records: 2 MiB batches, topics bench-p*-big created with
#      max.message.bytes=4194304, since Kafka's default limit is 1 MiB + 12 bytes);
#   2. latency: 1 KiB records, acks=1, 16 partitions, open loop at 10%, 25%, 50%, 75% and 90% of
#      the peak rate cell 1 measured for that configuration (latency from intended send times).
# Every cell deletes and re-creates its topic (--recreate-topic): the broker then holds at most one
# cell's data (a 10 s cell at 500 MB/s writes 5 GB; the whole matrix would write ~100 GB, more
# than this machine's disk, and Spate does not enforce retention in the background yet). Needs: cargo, jq. MB/s is 10^6 bytes of record values per second.
# SPATE_BIN=PATH uses that binary instead of building target/release/spate (to measure a build
# that other work in the tree cannot change mid-run). Run it under `nice -n -20` on a shared
# machine, and the broker too, so compilers on the same cores take less from the measurement.
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
if [ -n "${SPATE_BIN:-}" ]; then
  spate="$SPATE_BIN"
else
  cargo build --release --bin spate
  spate="$repo_dir/target/release/spate"
fi
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
    --recreate-topic \
    --json "$work_dir/$(printf %03d "$cell").json" "$@" > "$work_dir/$cell.log" 2>&1 \
    || { cat "$work_dir/$cell.log" >&2; echo "bench_matrix: cell $cell failed" >&2; }
  tail -n 6 "$work_dir/$cell.log" >&2
}

for size in "${sizes[@]}"; do
  # A 1 MiB record does not fit Kafka's default max.message.bytes (1 MiB + 12): its cells use
  # their own topics with a 4 MiB limit and 2 MiB batches.
  big=()
  batch=$((256 * 1024))
  suffix=""
  if [ "$size" -ge $((1024 * 1024)) ]; then
    big=(--topic-config max.message.bytes=4194304)
    batch=$((2 * 1024 * 1024))
    suffix="-big"
  fi
  for acks in 1 all; do
    for partitions in "${partition_counts[@]}"; do
      run_cell --topic "bench-p$partitions$suffix" --partitions "$partitions" \
        --record-size "$size" --acks "$acks" --batch-bytes "$batch" "${big[@]}"
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
