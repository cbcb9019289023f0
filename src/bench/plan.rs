//! The resolved plan of a run: the flags, checked together, plus what follows from them and from
//! the machine (generator cores, producers, run id, the broker address once known).
//!
//! The plan is also the "configuration" half of `--json`, so every figure can be traced back to
//! how it was made.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::BenchError;
use super::args::{BenchModeKind, LoadArgs, Rate};
use super::payload::XorShift;

/// How long a run lasts when neither --records nor --duration is given.
pub const DURATION_DEFAULT: Duration = Duration::from_secs(10);

/// A run, fully resolved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunPlan {
    /// produce, consume or e2e.
    pub mode: BenchModeKind,
    /// The flags as given (with `spate bench`'s defaults when no subcommand was given).
    pub args: LoadArgs,
    /// Whether the broker runs in this process.
    pub embedded: bool,
    /// The broker's bootstrap address (the embedded broker's once it started).
    pub bootstrap: String,
    /// CPUs the generator shards are pinned to.
    pub generator_cpus: Vec<usize>,
    /// Cores given to the embedded broker (its first cores); `None` for an external broker.
    pub broker_cores: Option<usize>,
    /// Producer clients over all generator shards.
    pub producers: u32,
    /// How long the load runs, when bounded by time.
    pub duration_ms: Option<u64>,
    /// Partitions of the topic as found or created.
    pub partitions: u32,
    /// Written into every record, so consumers count only this run's records.
    pub run_id: u64,
    /// The offered rate over all producers, records/s (`None`: max).
    pub rate_per_second: Option<f64>,
}

impl RunPlan {
    /// Checks the flags together and resolves defaults against this machine.
    pub fn new(mode: BenchModeKind, args: LoadArgs) -> Result<Self, BenchError> {
        let usable = usable_cpus()?;
        let embedded = args.embedded || args.bootstrap.is_none();
        let generator_cores = match args.cores {
            Some(cores) => cores as usize,
            None => (usable.len() / 2).max(1),
        };
        if generator_cores > usable.len() {
            return Err(BenchError::Config(format!(
                "--cores {generator_cores}: this process may use {} cores",
                usable.len()
            )));
        }
        let broker_cores = embedded.then(|| usable.len() - generator_cores);
        if broker_cores == Some(0) {
            if usable.len() < 2 {
                return Err(BenchError::Config(format!(
                    "the embedded broker needs a core of its own, and this process may use only \
                     {usable:?} (see taskset): give --bootstrap to load a broker started elsewhere"
                )));
            }
            return Err(BenchError::Config(format!(
                "--embedded needs a core for the broker: give --cores at most {}",
                usable.len() - 1
            )));
        }
        if mode == BenchModeKind::Consume && embedded {
            return Err(BenchError::Config(
                "consume needs a topic with records in it: give --bootstrap, or run e2e".into(),
            ));
        }
        if mode == BenchModeKind::Consume && args.recreate_topic {
            return Err(BenchError::Config(
                "consume --recreate-topic would delete what it is asked to read".into(),
            ));
        }
        if args.records == Some(0) {
            return Err(BenchError::Config("--records must be at least 1".into()));
        }
        // The generator takes the last cores, so an embedded broker (or one started with
        // `spate serve --cores N`, which takes the first N) does not share them.
        let generator_cpus = usable[usable.len() - generator_cores..].to_vec();
        let duration = match (args.records, args.duration) {
            (Some(_), _) => None,
            (None, Some(duration)) => Some(duration),
            (None, None) => Some(DURATION_DEFAULT),
        };
        let rate_per_second = match args.rate {
            Rate::Max => None,
            Rate::PerSecond(rate) => Some(rate),
        };
        Ok(Self {
            mode,
            embedded,
            bootstrap: args.bootstrap.clone().unwrap_or_default(),
            generator_cpus,
            broker_cores,
            producers: args.producers.unwrap_or(generator_cores as u32),
            duration_ms: duration.map(|d| d.as_millis() as u64),
            partitions: args.partitions,
            run_id: new_run_id(),
            rate_per_second,
            args,
        })
    }

    /// How long the load runs, when bounded by time.
    pub fn duration(&self) -> Option<Duration> {
        self.duration_ms.map(Duration::from_millis)
    }

    /// Records producer `index` sends when the run is bounded by --records.
    pub fn records_for_producer(&self, index: u32) -> Option<u64> {
        let total = self.args.records?;
        let producers = u64::from(self.producers);
        let share = total / producers;
        Some(share + u64::from(u64::from(index) < total % producers))
    }

    /// Records/s producer `index` is asked for (`None`: max).
    pub fn rate_for_producer(&self) -> Option<f64> {
        self.rate_per_second
            .map(|rate| rate / f64::from(self.producers))
    }
}

fn usable_cpus() -> Result<Vec<usize>, BenchError> {
    crate::io::cpus::usable_cpus()
        .map_err(|error| BenchError::Config(format!("cannot list usable CPUs: {error}")))
}

/// A run id that differs between runs (time and process id mixed).
fn new_run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut random = XorShift(nanos ^ (u64::from(std::process::id()) << 32) | 1);
    random.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves --records is split over producers without losing or adding a record.
    #[test]
    fn records_split_exactly() {
        let mut args = LoadArgs::embedded_default();
        args.records = Some(10);
        args.embedded = false;
        args.bootstrap = Some("127.0.0.1:9092".into());
        args.cores = Some(1);
        let mut plan = RunPlan::new(BenchModeKind::Produce, args).unwrap();
        plan.producers = 3;
        let shares: Vec<u64> = (0..3)
            .map(|i| plan.records_for_producer(i).unwrap())
            .collect();
        assert_eq!(shares, vec![4, 3, 3]);
    }
}
