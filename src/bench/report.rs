//! What `spate bench` reports: the progress line every second, the summary table and `--json`.
//!
//! The main thread folds shard samples into `Totals`; `progress` turns the last second into a
//! `ProgressLine` and `summary` the whole run into a `Summary`. These are values: the CLI prints
//! them (the library never writes to stdout). MB is 10^6 bytes of record values.

use std::fmt;
use std::time::Instant;

use super::latency::Percentiles;
use super::plan::RunPlan;
use super::sample::{Counters, ShardSample};

/// Everything received from the shards so far.
pub struct Totals {
    /// The sum of all samples.
    pub sum: ShardSample,
    printed: Counters,
    printed_consumed: Counters,
    printed_at: Instant,
    started_at: Instant,
}

impl Totals {
    /// Empty totals for a run starting now.
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            sum: ShardSample::default(),
            printed: Counters::default(),
            printed_consumed: Counters::default(),
            printed_at: now,
            started_at: now,
        }
    }

    /// Starts the clock of the progress lines: the load starts now.
    pub fn mark_start(&mut self) {
        let now = Instant::now();
        self.printed_at = now;
        self.started_at = now;
    }

    /// Adds one shard's sample.
    pub fn add(&mut self, sample: &ShardSample) {
        self.sum.add(sample);
    }

    /// The progress since the previous call.
    pub fn progress(&mut self) -> ProgressLine {
        let now = Instant::now();
        let seconds = now.duration_since(self.printed_at).as_secs_f64().max(1e-9);
        let produced = delta(&self.sum.produced, &self.printed);
        let consumed = delta(&self.sum.consumed, &self.printed_consumed);
        self.printed = self.sum.produced;
        self.printed_consumed = self.sum.consumed;
        self.printed_at = now;
        ProgressLine {
            elapsed_s: now.duration_since(self.started_at).as_secs_f64(),
            produced_per_s: produced.records as f64 / seconds,
            produced_mb_per_s: produced.bytes as f64 / seconds / 1e6,
            produce_p99_ms: self.sum.produce_latency.p99_ms(),
            consumed_per_s: consumed.records as f64 / seconds,
            consumed_mb_per_s: consumed.bytes as f64 / seconds / 1e6,
            e2e_p99_ms: self.sum.e2e_latency.p99_ms(),
            errors: self.sum.produced.errors + self.sum.consumed.errors,
            unacknowledged: self
                .sum
                .sent
                .saturating_sub(self.sum.produced.records + self.sum.produced.errors),
        }
    }
}

impl Default for Totals {
    fn default() -> Self {
        Self::new()
    }
}

fn delta(now: &Counters, before: &Counters) -> Counters {
    Counters {
        records: now.records - before.records,
        bytes: now.bytes - before.bytes,
        errors: now.errors - before.errors,
    }
}

/// One second of the run.
#[derive(Debug, Clone, Copy)]
pub struct ProgressLine {
    /// Seconds since the load started.
    pub elapsed_s: f64,
    /// Records acknowledged per second in the last interval.
    pub produced_per_s: f64,
    /// MB acknowledged per second.
    pub produced_mb_per_s: f64,
    /// Produce p99 since the start.
    pub produce_p99_ms: Option<f64>,
    /// Records consumed per second.
    pub consumed_per_s: f64,
    /// MB consumed per second.
    pub consumed_mb_per_s: f64,
    /// End-to-end p99 since the start.
    pub e2e_p99_ms: Option<f64>,
    /// Errors since the start.
    pub errors: u64,
    /// Records sent but neither acknowledged nor failed yet: the producers' buffers and the
    /// requests in flight. A figure that stays up while nothing is acknowledged is a stall.
    pub unacknowledged: u64,
}

impl fmt::Display for ProgressLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p99 = |p: Option<f64>| p.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2} ms"));
        write!(f, "{:6.1}s", self.elapsed_s)?;
        if self.produced_per_s > 0.0 || self.produce_p99_ms.is_some() {
            write!(
                f,
                "  produce {:>10.0} rec/s {:>8.1} MB/s  p99 {:>9}",
                self.produced_per_s,
                self.produced_mb_per_s,
                p99(self.produce_p99_ms)
            )?;
        }
        if self.consumed_per_s > 0.0 || self.e2e_p99_ms.is_some() {
            write!(
                f,
                "  consume {:>10.0} rec/s {:>8.1} MB/s  e2e p99 {:>9}",
                self.consumed_per_s,
                self.consumed_mb_per_s,
                p99(self.e2e_p99_ms)
            )?;
        }
        if self.unacknowledged > 0 {
            write!(f, "  unacked {}", self.unacknowledged)?;
        }
        write!(f, "  errors {}", self.errors)
    }
}

/// The figures of one direction over the whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirectionSummary {
    /// Records (acknowledged or consumed).
    pub records: u64,
    /// Value bytes.
    pub bytes: u64,
    /// Errors.
    pub errors: u64,
    /// Seconds from the load's start to the last acknowledgement or consumption.
    pub elapsed_s: f64,
    /// Records per second.
    pub records_per_s: f64,
    /// MB (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Latency: produce acknowledgement, or end to end for consumption; null when not measured.
    pub latency: Option<Percentiles>,
}

impl DirectionSummary {
    fn new(counters: &Counters, elapsed_s: f64, latency: Option<Percentiles>) -> Self {
        let seconds = elapsed_s.max(1e-9);
        Self {
            records: counters.records,
            bytes: counters.bytes,
            errors: counters.errors,
            elapsed_s,
            records_per_s: counters.records as f64 / seconds,
            mb_per_s: counters.bytes as f64 / seconds / 1e6,
            latency,
        }
    }
}

/// The result of a run, as printed and as written by `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The whole configuration, flags and what was resolved from them.
    pub config: RunPlan,
    /// What the producers did (null in consume mode).
    pub produced: Option<DirectionSummary>,
    /// What the consumers did (null in produce mode).
    pub consumed: Option<DirectionSummary>,
    /// In e2e: whether the consumers received every acknowledged record before the drain bound.
    pub drained: Option<bool>,
    /// Errors of both directions.
    pub errors: u64,
    /// The first distinct error messages.
    pub error_messages: Vec<String>,
    /// How busy the generator shards were, in percent of their cores (100: the generator may
    /// have been the limit). Counts each shard from its start to its end, set-up included.
    pub generator_cpu_pct: f64,
}

impl Summary {
    /// The summary of a finished run whose load started at `start_ns` (ns since the epoch).
    pub fn new(plan: &RunPlan, totals: &Totals, start_ns: u64) -> Self {
        let sum = &totals.sum;
        let elapsed =
            |end: Option<u64>| end.unwrap_or(start_ns).saturating_sub(start_ns) as f64 / 1e9;
        let produced = plan.mode.produces().then(|| {
            DirectionSummary::new(
                &sum.produced,
                elapsed(sum.produce_end_ns),
                sum.produce_latency.percentiles(),
            )
        });
        let consumed = plan.mode.consumes().then(|| {
            DirectionSummary::new(
                &sum.consumed,
                elapsed(sum.consume_end_ns),
                sum.e2e_latency.percentiles(),
            )
        });
        let drained = (plan.mode.produces() && plan.mode.consumes())
            .then_some(sum.consumed.records >= sum.produced.records);
        Self {
            config: plan.clone(),
            produced,
            consumed,
            drained,
            errors: sum.produced.errors + sum.consumed.errors,
            error_messages: sum.error_messages.clone(),
            generator_cpu_pct: 100.0 * sum.cpu_ns as f64 / sum.wall_ns.max(1) as f64,
        }
    }

    /// The JSON document for `--json`.
    pub fn to_json(&self) -> String {
        // A struct of numbers, strings and options always serialises.
        serde_json::to_string_pretty(self).expect("the summary serialises")
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "\n{:<10} {:>12} {:>10} {:>10} {:>8} | {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  (latency in ms)\n",
            "", "records", "rec/s", "MB/s", "errors", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        ));
        let rows = [("produce", &self.produced), ("consume", &self.consumed)];
        for (name, direction) in rows {
            let Some(d) = direction else { continue };
            out.push_str(&format!(
                "{:<10} {:>12} {:>10.0} {:>10.1} {:>8} | ",
                name, d.records, d.records_per_s, d.mb_per_s, d.errors
            ));
            match &d.latency {
                Some(p) => out.push_str(&format!(
                    "{:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
                    p.p50_ms, p.p90_ms, p.p99_ms, p.p99_9_ms, p.p99_99_ms, p.max_ms
                )),
                None => out.push_str("(no latency measured)\n"),
            }
        }
        out.push_str(&format!(
            "generator shards: {:.0}% busy ({} core(s))\n",
            self.generator_cpu_pct,
            self.config.generator_cpus.len()
        ));
        if self.consumed.is_some() && self.produced.is_some() {
            out.push_str("consume latency is end to end: intended send time to consumption\n");
        }
        if self.drained == Some(false) {
            out.push_str(
                "WARNING: the consumers did not receive every acknowledged record in time\n",
            );
        }
        if self.errors > 0 {
            out.push_str(&format!("ERRORS: {}\n", self.errors));
            for message in &self.error_messages {
                out.push_str(&format!("  {message}\n"));
            }
        }
        out
    }
}
