#!/usr/bin/env bash
# The load-generator matrix of issue 4: `spate bench produce` against one bootstrap address, every
# cell's full `--json` report collected into perf/results/<date>-<target>.json, the same
# throughput cells run with librdkafka's producer (benches/produce_rdkafka.rs --bootstrap) on the
# same broker in the same run, and the loopback TCP ceiling (iperf3) measured in the same run;
# then perf/report.py regenerates the matrix section of perf/RESULTS.md and the plots
# perf/results/<date>-<target>-*.svg from the results file.
#
# Usage: perf/bench_matrix.sh BOOTSTRAP TARGET [--duration 10s] [--quick] [--broker-pid PID]
#                             [--broker-cpu N] [--generator-cpu M] [--disk-dir DIR] [--no-rdkafka]
#   BOOTSTRAP  host:port of the broker to load (Spate, Kafka, Redpanda, ...), started beforehand;
#              for Spate on this 2-core machine: `taskset -c 1 spate serve --cores 1 --data-dir D`.
#   TARGET     a name for the broker in the results file name (e.g. spate-1core, kafka).
#   --duration each cell's length (default 10s);
#   --quick    only 1 KiB records, 16 partitions, acks 1 and all, and a 3-step rate sweep;
#   --broker-pid the broker's pid: each cell then records the broker's CPU (percent of a core);
#   --broker-cpu, --generator-cpu  where the broker runs (iperf3's server goes there) and where
#              every generator (spate bench, librdkafka, iperf3's client) is pinned; defaults 0
#              and the last CPU. Put the broker on the CPU that takes the disk's interrupts
#              (/proc/interrupts), or the generator pays for the broker's I/O completions;
#   --disk-dir a directory on the broker's disk: fio measures the disk's write ceiling there in
#              the same run (16 sequential O_DIRECT writers, as 16 partitions write);
#   --no-rdkafka skips the librdkafka cells.
#
# Cells, in this order:
#   1. throughput: record sizes 100 B, 1 KiB, 16 KiB, 1 MiB x acks 1 and all x 1 and 16
#      partitions, at --rate max (1 MiB records: 2 MiB batches, topics bench-p*-big created with
#      max.message.bytes=4194304, since Kafka's default limit is 1 MiB + 12 bytes);
#   2. latency: 1 KiB records, acks=1, 16 partitions, open loop at 10%, 25%, 50%, 75% and 90% of
#      the peak rate cell 1 measured for that configuration (latency from intended send times).
# Every cell deletes and re-creates its topic (--recreate-topic; the librdkafka cell reuses the
# spate cell's topic, and re-creates it too): the broker then holds at most one cell's data per
# topic name (a 10 s cell at 500 MB/s writes 5 GB; the whole matrix would write ~100 GB, more than
# this machine's disk, and the default retention keeps data for 7 days). Needs: cargo, jq, bc;
# iperf3 and fio for the ceilings (each skipped without it). MB/s is 10^6 bytes of record values
# per second.
# SPATE_BIN=PATH uses that binary instead of building target/release/spate (to measure a build
# that other work in the tree cannot change mid-run). Run it under `nice -n -20` on a shared
# machine, and the broker too, so compilers on the same cores take less from the measurement.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,25p' "$0" >&2
  exit 2
fi
command_line="perf/bench_matrix.sh $*"
bootstrap="$1"
target="$2"
shift 2
duration=10s
quick=0
broker_pid=""
broker_cpu=0
client_cpu=$(( $(nproc --all) - 1 ))
disk_dir=""
rdkafka=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --broker-pid) broker_pid="$2"; shift 2 ;;
    --broker-cpu) broker_cpu="$2"; shift 2 ;;
    --generator-cpu) client_cpu="$2"; shift 2 ;;
    --disk-dir) disk_dir="$2"; shift 2 ;;
    --no-rdkafka) rdkafka=0; shift ;;
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
rdkafka_bench=""
if [ "$rdkafka" = 1 ]; then
  # The librdkafka bench binary (builds librdkafka from source the first time).
  rdkafka_bench="$(cargo bench --bench produce_rdkafka --no-run --message-format=json 2>/dev/null \
    | jq -r 'select(.reason == "compiler-artifact" and .target.name == "produce_rdkafka")
             | .executable // empty' | tail -1)"
  [ -x "$rdkafka_bench" ] || { echo "bench_matrix: produce_rdkafka bench not built" >&2; exit 1; }
fi
work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT
results_dir="$repo_dir/perf/results"
mkdir -p "$results_dir"
out="$results_dir/$(date -u +%Y-%m-%d)-$target.json"
# Never overwrite an earlier run's results: a second run the same day gets -2, -3, ...
run_number=1
while [ -e "$out" ]; do
  run_number=$((run_number + 1))
  out="$results_dir/$(date -u +%Y-%m-%d)-$target-$run_number.json"
done

if [ "$quick" = 1 ]; then
  sizes=(1024); partition_counts=(16); rate_shares=(25 50 90)
else
  sizes=(100 1024 16384 1048576); partition_counts=(1 16); rate_shares=(10 25 50 75 90)
fi

# CPU time (user + system, in clock ticks) the broker has used so far; empty without --broker-pid.
broker_ticks() {
  [ -n "$broker_pid" ] && awk '{print $14 + $15}' "/proc/$broker_pid/stat"
}
ticks_per_second="$(getconf CLK_TCK)"

# Loopback TCP ceiling, one stream, server on the broker's CPU and client on the generator's.
iperf_mb_s=null
if command -v iperf3 > /dev/null; then
  taskset -c "$broker_cpu" iperf3 --server --one-off --port 5299 > /dev/null 2>&1 &
  iperf_server=$!
  sleep 0.5
  iperf_mb_s="$(taskset -c "$client_cpu" iperf3 --client 127.0.0.1 --port 5299 --time 5 --json \
    | jq '.end.sum_received.bits_per_second / 8e6 | floor')"
  wait "$iperf_server" || true
  echo "bench_matrix: iperf3 loopback $iperf_mb_s MB/s" >&2
fi

# The disk's write ceiling, shaped like 16 partitions' appends: 16 sequential O_DIRECT writers of
# 256 KiB, one write in flight each, into fallocated files (as segments are).
fio_mb_s=null
if [ -n "$disk_dir" ] && command -v fio > /dev/null; then
  fio_dir="$(mktemp -d "$disk_dir/bench-matrix-fio.XXXXXX")"
  fio_mb_s="$(fio --name=ceiling --directory="$fio_dir" --ioengine=io_uring --direct=1 --rw=write \
    --bs=256k --iodepth=1 --numjobs=16 --size=512m --fallocate=native --group_reporting \
    --output-format=json 2> /dev/null | jq '.jobs[0].write.bw_bytes / 1e6 | floor')"
  rm -rf "$fio_dir"
  echo "bench_matrix: fio O_DIRECT write $fio_mb_s MB/s" >&2
fi

cell=0
# Runs one cell; its report goes to $work_dir/<n>.json (with the broker's CPU added when known)
# and its summary table to stderr.
run_cell() {
  cell=$((cell + 1))
  local json="$work_dir/$(printf %03d "$cell").json"
  echo "bench_matrix: cell $cell: spate bench produce $*" >&2
  local ticks_before seconds_before
  ticks_before="$(broker_ticks)"
  seconds_before="$(date +%s.%N)"
  taskset -c "$client_cpu" "$spate" bench produce --bootstrap "$bootstrap" --duration "$duration" --cores 1 \
    --recreate-topic --json "$json" "$@" > "$work_dir/$cell.log" 2>&1 \
    || { cat "$work_dir/$cell.log" >&2; echo "bench_matrix: cell $cell failed" >&2; return; }
  tail -n 4 "$work_dir/$cell.log" >&2
  if [ -n "$broker_pid" ]; then
    local cpu
    cpu="$(echo "($(broker_ticks) - $ticks_before) * 100 / $ticks_per_second / ($(date +%s.%N) - $seconds_before)" | bc -l)"
    jq --argjson cpu "$cpu" '. + {broker_cpu_pct: ($cpu | floor)}' "$json" > "$json.tmp" && mv "$json.tmp" "$json"
  fi
}

# Runs librdkafka's producer for one throughput cell; its JSON line goes to $work_dir/rdkafka.jsonl.
run_rdkafka_cell() {
  local size="$1" acks="$2" partitions="$3" topic="$4"
  shift 4
  echo "bench_matrix: librdkafka: $size B, acks=$acks, $partitions partitions" >&2
  local pid_flag=()
  [ -n "$broker_pid" ] && pid_flag=(--broker-pid "$broker_pid")
  "$rdkafka_bench" --bootstrap "$bootstrap" "${pid_flag[@]}" --client-cpu "$client_cpu" \
    --seconds "${duration%s}" --records 100000000 --acks "$acks" --partitions "$partitions" \
    --record-bytes "$size" --topic "$topic" "$@" 2> "$work_dir/rdkafka.log" >> "$work_dir/rdkafka.jsonl" \
    || { tail -n 20 "$work_dir/rdkafka.log" >&2; echo "bench_matrix: librdkafka cell failed" >&2; }
  grep -E '^  p[0-9]+ acks' "$work_dir/rdkafka.log" >&2 || true
}

for size in "${sizes[@]}"; do
  # A 1 MiB record does not fit Kafka's default max.message.bytes (1 MiB + 12): its cells use
  # their own topics with a 4 MiB limit and 2 MiB batches.
  big=()
  # 1 MiB batches, as benches/produce_rdkafka.rs configures librdkafka (batch.size), so the two
  # generators are compared on the same batching.
  batch=$((1024 * 1024))
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
      if [ "$rdkafka" = 1 ]; then
        run_rdkafka_cell "$size" "$acks" "$partitions" "bench-p$partitions$suffix" "${big[@]}"
      fi
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

touch "$work_dir/rdkafka.jsonl"
jq -s --arg target "$target" --arg bootstrap "$bootstrap" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg commit "$(git rev-parse --short HEAD)" \
  --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson iperf "$iperf_mb_s" \
  --argjson fio "$fio_mb_s" --argjson broker_cpu "$broker_cpu" --argjson generator_cpu "$client_cpu" \
  --arg command "$command_line" \
  --slurpfile rdkafka "$work_dir/rdkafka.jsonl" \
  '{target: $target, bootstrap: $bootstrap, date: $date, commit: $commit, command: $command,
    load_average_at_end: $load, iperf3_loopback_mb_per_s: $iperf, fio_write_mb_per_s: $fio,
    broker_cpu: $broker_cpu, generator_cpu: $generator_cpu, cells: .,
    rdkafka_cells: $rdkafka}' "$work_dir"/[0-9][0-9][0-9].json > "$out"

echo "bench_matrix: wrote $out" >&2
# The tables, the target ratios and the plots; updates perf/RESULTS.md's matrix section.
python3 "$repo_dir/perf/report.py" "$out"
