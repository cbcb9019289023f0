//! The broker `spate bench --embedded` runs in this process: a temporary data dir, port 0, and
//! the first `broker_cores` cores (the generator takes the last ones).
//!
//! `stop` closes the broker and removes its directory; callers must call it even when the load
//! failed (a broker not stopped leaves its directory behind). Settings not given here come from
//! `SPATE_*` variables, as for `spate serve`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;

use crate::config::BrokerConfig;
use crate::shard::launcher::{self, RunningBroker};

use super::BenchError;

/// A Spate broker inside the bench process.
pub struct EmbeddedBroker {
    broker: RunningBroker,
    data_dir: PathBuf,
}

/// Lets clap build a `BrokerConfig` with every default `spate serve` has.
#[derive(Parser)]
struct EmbeddedConfig {
    #[command(flatten)]
    config: BrokerConfig,
}

impl EmbeddedBroker {
    /// Starts a broker on `cores` cores in a fresh directory under the system temp dir.
    pub fn start(cores: usize) -> Result<Self, BenchError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let data_dir =
            std::env::temp_dir().join(format!("spate-bench-{}-{nanos}", std::process::id()));
        let cores = cores.to_string();
        let data_dir_text = data_dir.display().to_string();
        let parsed = EmbeddedConfig::try_parse_from([
            "spate-embedded",
            "--data-dir",
            &data_dir_text,
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--cores",
            &cores,
        ])
        .map_err(|error| BenchError::Config(format!("embedded broker configuration: {error}")))?;
        match launcher::start(parsed.config) {
            Ok(broker) => Ok(Self { broker, data_dir }),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                Err(BenchError::Broker(error))
            }
        }
    }

    /// The broker's bootstrap address.
    pub fn bootstrap(&self) -> String {
        self.broker.bootstrap()
    }

    /// Stops the broker and removes its directory.
    pub fn stop(self) -> Result<(), BenchError> {
        self.broker.stop();
        std::fs::remove_dir_all(&self.data_dir).map_err(|source| BenchError::Io {
            what: format!("removing {}", self.data_dir.display()),
            source,
        })
    }
}
