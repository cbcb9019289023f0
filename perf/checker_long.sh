#!/usr/bin/env bash
# The history checker's long run (issue 13): `long_run` of tests/checker.rs, i.e. a round of each
# fault kind alone (SIGKILL, SIGKILL with a replayed power loss, SIGSTOP past the session timeout,
# links cut, SIGKILL during CreateTopics; an eighth of the faults each) and then one mixed round
# with the rest, each
# on a fresh three-broker cluster with RF=3 topics, each round's history checked. Prints every
# round's report and a summary line per round; exits non-zero if any round has an anomaly.
#
# Usage: perf/checker_long.sh [FAULTS] [SEED]
#   FAULTS  total faults (default 100; about 8 s each here, so 100 take about 15 minutes);
#   SEED    replays a schedule (the seed is printed at the start).
# The output is also kept in target/checker-long-<date>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
faults="${1:-100}"
log="target/checker-long-$(date -u +%Y%m%dT%H%M%SZ).log"
export SPATE_CHECKER_FAULTS="$faults"
if [[ $# -ge 2 ]]; then
    export SPATE_TEST_SEED="$2"
fi
echo "checker long run: $faults faults, log $log"
cargo test --release --test checker long_run -- --ignored --nocapture 2>&1 | tee "$log"
