#!/usr/bin/env bash
# Idle cost of replicated partitions (issue 13's target: 1,000 RF=3 partitions per broker cost
# under 5% of a core when idle): a three-broker cluster on this machine (one shard each), one
# topic of PARTITIONS partitions with replication factor 3 (so every broker holds PARTITIONS
# replicas), then each broker's CPU time over SECONDS of idleness, from /proc/<pid>/stat.
#
# Usage: perf/idle_replicas.sh [PARTITIONS] [SECONDS] [SETTLE]   (defaults 1000, 30 and 5)
#   SETTLE: seconds between the topic's creation and the measurement. The leaders' first
#   in-sync replica reports (every half replica.lag.time.max.ms, 15 s) fall inside a short one.
set -euo pipefail
cd "$(dirname "$0")/.."
partitions="${1:-1000}"
seconds="${2:-30}"
settle="${3:-5}"
out="target/idle-replicas"
rm -rf "$out"
mkdir -p "$out"
cargo build --release --quiet
spate="$PWD/target/release/spate"

voters="1@127.0.0.1:19092,2@127.0.0.1:19192,3@127.0.0.1:19292"
pids=()
for id in 1 2 3; do
    "$spate" serve --data-dir "$out/b$id" --port "$((9092 + (id - 1) * 100))" --cores 1 \
        --node-id "$id" --controller-quorum-voters "$voters" >"$out/b$id.log" 2>&1 &
    pids[$id]=$!
done
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 3

# A one-record produce creates the topic (with its replication factor) and waits for its leaders.
created=$(date +%s.%N)
"$spate" bench produce --bootstrap 127.0.0.1:9092 --topic idle --partitions "$partitions" \
    --replication-factor 3 --records 1 --acks all >"$out/create.log" 2>&1 ||
    { echo "creating the topic failed:"; tail -n 20 "$out/create.log"; exit 1; }
echo "topic of $partitions RF=3 partitions created and led in $(echo "$(date +%s.%N) - $created" | bc) s"
sleep "$settle"

ticks=$(getconf CLK_TCK)
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A before
for id in 1 2 3; do before[$id]=$(cpu_of "${pids[$id]}"); done
sleep "$seconds"
for id in 1 2 3; do
    used=$(( $(cpu_of "${pids[$id]}") - before[$id] ))
    echo "broker $id: $used ticks in $seconds s: $(echo "scale=1; 100 * $used / $ticks / $seconds" | bc)% of a core idle with $partitions replicas"
done
