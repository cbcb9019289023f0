#!/usr/bin/env bash
# Issue 5 figures, both against `spate serve --cores 1` (broker on CPU 0, `spate bench` on CPU 1):
#   1. Recovery time after an unclean stop: fill a 16-partition topic with GIB GiB of 1 KiB
#      records (acks=1), SIGKILL the broker, start it again and time it until it is ready (the
#      `listeners` file appears), next to the shard's own "partitions recovered" elapsed_ms. With
#      the default 1 GiB segment.bytes every partition's data is in its active segment; recovery
#      restores its last recovery checkpoint (one per 64 MiB written) and scans only what follows
#      it (read back with O_DIRECT, every batch's CRC checked).
#   2. Produce throughput while retention deletes segments: 20 s of acks=1 produce to 4
#      partitions with segment.bytes=32 MiB, once with retention.bytes=64 MiB (a segment deleted
#      about every 32 MiB per partition; the retention check runs every second) and once without
#      retention, same broker flags otherwise.
# Every data directory is removed after its run. Prints a markdown summary on stdout; broker logs
# and bench JSON stay in target/recovery_bench/.
#
# Usage: perf/recovery_retention.sh [GIB...]     (default: 1 10)
# Needs: cargo, taskset, jq; free disk space for the largest GIB plus ~15 GB (checked with df).
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_dir"
work_dir="$repo_dir/target/recovery_bench"
binary="$repo_dir/target/release/spate"
sizes_gib=("$@")
if (( ${#sizes_gib[@]} == 0 )); then
    sizes_gib=(1 10)
fi
mkdir -p "$work_dir"
cargo build --release >&2
df -h "$work_dir" >&2

broker_pid=""
data_dir=""
cleanup() {
    if [[ -n "$broker_pid" ]]; then
        kill -9 "$broker_pid" 2>/dev/null || true
    fi
    if [[ -n "$data_dir" ]]; then
        rm -rf "$data_dir"
    fi
}
trap cleanup EXIT

# start_broker DATA_DIR LOG [serve flags...]: starts the broker, waits until it is ready; sets
# broker_pid, bootstrap and ready_ms (milliseconds from exec to ready).
start_broker() {
    local dir="$1" log="$2"
    shift 2
    rm -f "$dir/listeners"
    local started_ns
    started_ns="$(date +%s%N)"
    taskset -c 0 "$binary" serve --cores 1 --port 0 --data-dir "$dir" "$@" >>"$log" 2>&1 &
    broker_pid=$!
    while [[ ! -s "$dir/listeners" ]]; do
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            echo "broker exited; see $log" >&2
            exit 1
        fi
        sleep 0.01
    done
    ready_ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
    bootstrap="$(awk 'NR == 1 { print $2 }' "$dir/listeners")"
}

# The broker's log without its colour codes.
plain() {
    sed 's/\x1b\[[0-9;]*m//g' "$1"
}

bench() {
    taskset -c 1 "$binary" bench produce --bootstrap "$bootstrap" --cores 1 --record-size 1024 \
        --acks 1 "$@"
}

echo "| data | .log files | ready after restart (s) | shard recovery elapsed (s) | GB recovered per s |"
echo "|---|---|---|---|---|"
for gib in "${sizes_gib[@]}"; do
    data_dir="$work_dir/recovery-${gib}g"
    log="$work_dir/recovery-${gib}g.log"
    rm -rf "$data_dir" "$log"
    mkdir -p "$data_dir"
    start_broker "$data_dir" "$log"
    bench --topic recovery --partitions 16 --records $(( gib * 1024 * 1024 )) \
        --json "$work_dir/fill-${gib}g.json" >&2
    kill -9 "$broker_pid"
    wait "$broker_pid" 2>/dev/null || true
    files="$(find "$data_dir" -name '*.log' | wc -l)"
    start_broker "$data_dir" "$log"
    # Recovery trimmed every scanned file to its data, so this is the data recovery read.
    bytes="$(find "$data_dir" -name '*.log' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')"
    elapsed_ms="$(plain "$log" | grep 'partitions recovered' | tail -1 | sed -E 's/.*elapsed_ms=([0-9]+).*/\1/')"
    rate="$(awk -v b="$bytes" -v ms="$elapsed_ms" 'BEGIN { printf "%.2f", b / 1e9 / (ms / 1000) }')"
    printf '| %s GiB (%s bytes on disk) | %s | %.2f | %.2f | %s |\n' "$gib" "$bytes" "$files" \
        "$(awk -v ms="$ready_ms" 'BEGIN { print ms / 1000 }')" \
        "$(awk -v ms="$elapsed_ms" 'BEGIN { print ms / 1000 }')" "$rate"
    kill "$broker_pid"
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
    rm -rf "$data_dir"
done

echo
echo "| run | MB/s | records/s | errors | segments deleted | .log files at the end |"
echo "|---|---|---|---|---|---|"
for mode in without with; do
    data_dir="$work_dir/retention-$mode"
    log="$work_dir/retention-$mode.log"
    rm -rf "$data_dir" "$log"
    mkdir -p "$data_dir"
    start_broker "$data_dir" "$log" --log-retention-check-interval-ms 1000
    configs=(--topic-config segment.bytes=33554432)
    if [[ "$mode" == with ]]; then
        configs+=(--topic-config retention.bytes=67108864)
    fi
    json="$work_dir/retention-$mode.json"
    bench --topic retention --partitions 4 --duration 20s "${configs[@]}" --json "$json" >&2
    files="$(find "$data_dir" -name '*.log' | wc -l)"
    kill "$broker_pid"
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
    deleted="$(plain "$log" | { grep 'retention deleted segments' || true; } \
        | sed -E 's/.*deleted=([0-9]+).*/\1/' | awk '{ s += $1 } END { print s + 0 }')"
    printf '| %s retention | %s | %s | %s | %s | %s |\n' "$mode" \
        "$(jq -r '.produced.mb_per_s * 10 | floor / 10' "$json")" \
        "$(jq -r '.produced.records_per_s | floor' "$json")" \
        "$(jq -r '.errors' "$json")" "$deleted" "$files"
    rm -rf "$data_dir"
done
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
