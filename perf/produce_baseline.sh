#!/usr/bin/env bash
# Produce throughput baseline for issue 3: librdkafka -> `spate serve --cores 1`, read against the
# disk's own O_DIRECT sequential write bandwidth measured in the same run.
#
# Usage: perf/produce_baseline.sh [bench flags...]
#   e.g. perf/produce_baseline.sh --records 2000000 --seconds 20 --acks 1,all --partitions 16,1
#   Bench flags are passed to `cargo bench --bench produce_rdkafka --`; see the header of
#   benches/produce_rdkafka.rs for them and for exactly what is measured.
#
# Steps, in this order so nothing else is using the machine while it measures:
#   1. `cargo build --release` (the broker binary) and `cargo bench --bench produce_rdkafka
#      --no-run` (the load generator; builds librdkafka from source the first time).
#   2. fio, O_DIRECT, io_uring, on a 2 GiB file in target/produce_bench, which is where the bench
#      puts the broker's data dir, so both write to the same filesystem:
#        seqwrite 1 MiB blocks x 8 in flight, seqwrite 64 KiB x 32 in flight, and 64 KiB writes
#        each followed by fdatasync (the cost acks=all pays per group commit).
#      fio is installed with apt-get if missing. The fio file is removed on exit.
#   3. iperf3 over loopback, 5 s each: server on CPU 0 and client on CPU 1 (the bench's layout),
#      then both on CPU 0; only if iperf3 is installed.
#   4. The bench: broker on CPU 0, librdkafka on CPU 1, 1 KiB records, acks=1 and acks=all.
#   5. A markdown table on stdout (what perf/RESULTS.md records); raw fio JSON and the bench's
#      JSON lines stay in target/produce_bench/ for a closer look.
#
# Priority: the measurements (fio, iperf3, broker, bench) run under `nice -n $BENCH_NICE`, by
# default -20 when run as root (0 otherwise), so other work on a shared machine (compilers, other
# tests) takes less from the two pinned cores and adds less wake-up latency. It does not make the
# machine quiet: the load average printed at the end says how busy it was.
#
# MB/s here is 10^6 bytes per second everywhere (fio's bw_bytes / 10^6, the bench's record values
# / 10^6). Environment: SPATE_BENCH_PERF_DIR=DIR also records the broker with `perf record` during
# each run (see the bench). Needs: cargo, jq, taskset; root or sudo for apt-get if fio is missing.
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_dir"
work_dir="$repo_dir/target/produce_bench"
mkdir -p "$work_dir"
fio_file="$work_dir/fio-seqwrite.dat"
trap 'rm -f "$fio_file"' EXIT

fs_type="$(stat -f -c %T "$work_dir")"
case "$fs_type" in
  tmpfs | ramfs) echo "produce_baseline: $work_dir is on $fs_type; O_DIRECT needs a real disk" >&2; exit 1 ;;
esac

if ! command -v fio > /dev/null; then
  echo "produce_baseline: installing fio" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq fio > /dev/null
fi
bench_nice="${BENCH_NICE:-$([ "$(id -u)" -eq 0 ] && echo -20 || echo 0)}"
niced=(nice -n "$bench_nice")
command -v jq > /dev/null || { echo "produce_baseline: jq is needed for the table" >&2; exit 1; }

echo "produce_baseline: building" >&2
cargo build --release --bin spate
cargo bench --bench produce_rdkafka --no-run

# Prints write bandwidth in MB/s (10^6 B/s) of one fio job; the full JSON is kept.
run_fio() {
  local name="$1"
  shift
  "${niced[@]}" fio --name="$name" --filename="$fio_file" --ioengine=io_uring --direct=1 --rw=write \
    --output-format=json --output="$work_dir/fio-$name.json" "$@" > /dev/null
  rm -f "$fio_file"
  jq -r '.jobs[0].write.bw_bytes / 1e6 | floor' "$work_dir/fio-$name.json"
}

echo "produce_baseline: fio on $work_dir ($fs_type, $(df --output=source "$work_dir" | tail -1))" >&2
fio_1m_mb_s="$(run_fio seqwrite-1m-x8 --bs=1M --iodepth=8 --size=2G)"
fio_64k_mb_s="$(run_fio seqwrite-64k-x32 --bs=64k --iodepth=32 --size=2G)"
run_fio fdatasync-64k --bs=64k --iodepth=1 --size=64M --fdatasync=1 > /dev/null
fsync_ms="$(jq -r '.jobs[0].sync.lat_ns.mean / 1e6 * 100 | floor / 100' "$work_dir/fio-fdatasync-64k.json")"

# Prints loopback TCP MB/s of one iperf3 stream, server on CPU $1, client on CPU $2.
run_iperf() {
  "${niced[@]}" taskset -c "$1" iperf3 --server --one-off --port 5299 > /dev/null 2>&1 &
  local server=$!
  sleep 0.5
  "${niced[@]}" taskset -c "$2" iperf3 --client 127.0.0.1 --port 5299 --time 5 --json \
    > "$work_dir/iperf3-$1-$2.json"
  wait "$server" || true
  jq -r '.end.sum_received.bits_per_second / 8e6 | floor' "$work_dir/iperf3-$1-$2.json"
}
iperf_cross_mb_s="not run (iperf3 not installed)"
iperf_same_mb_s="not run"
if command -v iperf3 > /dev/null; then
  iperf_cross_mb_s="$(run_iperf 0 1)"
  iperf_same_mb_s="$(run_iperf 0 0)"
fi

echo "produce_baseline: produce bench" >&2
load_before_bench="$(cut -d' ' -f1-3 /proc/loadavg)"
"${niced[@]}" cargo bench --bench produce_rdkafka -- "$@" | tee "$work_dir/produce.jsonl"

echo
echo "| what | MB/s | records/s | ratio to fio 1 MiB x 8 | broker CPU | client CPU | broker RTT avg / p99 (ms) | batch avg (KiB) | broker disk writes / record bytes | delivered / failed |"
echo "|---|---|---|---|---|---|---|---|---|---|"
echo "| fio seqwrite O_DIRECT, 1 MiB x 8 in flight | $fio_1m_mb_s | | 1.00 | | | | | | |"
echo "| fio seqwrite O_DIRECT, 64 KiB x 32 in flight | $fio_64k_mb_s | | $(jq -n "$fio_64k_mb_s / $fio_1m_mb_s * 100 | floor / 100") | | | | | | |"
grep '^{"bench":"produce_rdkafka"' "$work_dir/produce.jsonl" | jq -r --argjson fio "$fio_1m_mb_s" '
  def r2: . * 100 | floor / 100;
  "| produce, \(.partitions) partition(s), acks=\(.acks), \(.record_bytes) B records | \(.mb_per_s) | \(.records_per_s) | \(.mb_per_s / $fio | r2) | \(.broker_cpu_pct)% | \(.client_cpu_pct)% | \(.rtt_ms_avg) / \(.rtt_ms_p99_max) | \(.batch_bytes_avg / 1024 | floor) | \(if .records_delivered > 0 then (.broker_write_bytes / (.records_delivered * .record_bytes) | r2) else "-" end) | \(.records_delivered) / \(.records_failed) |"'
echo
echo "fdatasync after a 64 KiB O_DIRECT write: ${fsync_ms} ms mean (fio, iodepth 1)."
echo "Loopback TCP, one stream (iperf3): ${iperf_cross_mb_s} MB/s from CPU 1 to CPU 0 (the bench's"
echo "layout: client on CPU 1, broker on CPU 0); ${iperf_same_mb_s} MB/s with both ends on CPU 0."
echo "Load average before the produce bench (1, 5, 15 min): ${load_before_bench}; anything else"
echo "running on the two cores lowers the produce figures. Measurements ran at nice ${bench_nice}."
