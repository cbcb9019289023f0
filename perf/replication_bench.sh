#!/usr/bin/env bash
# Replicated partitions under load (issue 13): a three-broker cluster on this machine (one shard
# each), `spate bench produce` with acks=all to an RF=1 topic and then to an RF=3 topic in the
# same run (the RF=1 row is the ceiling), acks=1 to an RF=3 topic (answered at the leader's
# write), then an RF=3 acks=all run during which the leader-heavy broker is SIGKILLed: the bench
# must go on after a pause with every record acknowledged.
#
# Usage: perf/replication_bench.sh [SECONDS] [RECORD_SIZE]
#   SECONDS      length of each measured run (default 15; the failover run is twice that)
#   RECORD_SIZE  bytes per record (default 1024)
# Output: each run's bench summary, and the JSON files under target/replication-bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
record_size="${2:-1024}"
out="target/replication-bench"
rm -rf "$out"
mkdir -p "$out"
cargo build --release --quiet
spate="$PWD/target/release/spate"

voters="1@127.0.0.1:19092,2@127.0.0.1:19192,3@127.0.0.1:19292"
pids=()
start_broker() {
    local id="$1"
    "$spate" serve --data-dir "$out/b$id" --port "$((9092 + (id - 1) * 100))" --cores 1 \
        --node-id "$id" --controller-quorum-voters "$voters" >"$out/b$id.log" 2>&1 &
    pids[$id]=$!
}
stop_all() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    # The brokers' data (tens of GB after a run at full speed); the JSON and logs stay.
    rm -rf "$out"/b1 "$out"/b2 "$out"/b3
}
trap stop_all EXIT

for id in 1 2 3; do
    start_broker "$id"
done
bootstrap="127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
sleep 3

# `bench NAME LINES ACKS ARGS...`: one produce run, the last LINES lines of its output (0: all).
bench() {
    local name="$1" lines="$2" acks="$3"
    shift 3
    echo "== $name (acks=$acks)"
    "$spate" bench produce --bootstrap "$bootstrap" --record-size "$record_size" --acks "$acks" \
        --partitions 6 --json "$out/$name.json" "$@" 2>&1 |
        if [[ "$lines" -gt 0 ]]; then tail -n "$lines"; else cat; fi
}

bench rf1 6 all --topic rf1 --replication-factor 1 --duration "${seconds}s"
bench rf3 6 all --topic rf3 --replication-factor 3 --duration "${seconds}s"
bench rf3-acks1 6 1 --topic rf3-acks1 --replication-factor 3 --duration "${seconds}s"

# The failover run: broker 2 is killed a third of the way in.
bench rf3-failover 0 all --topic rf3-failover --replication-factor 3 --duration "$((seconds * 2))s" &
bench_pid=$!
sleep "$((seconds * 2 / 3))"
echo "== SIGKILL of broker 2 at $(date -u +%T.%N)"
kill -9 "${pids[2]}"
wait "$bench_pid"
unset 'pids[2]'

