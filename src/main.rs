//! The `spate` command line: `spate serve` runs the broker.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use spate::config::BrokerConfig;

/// Spate: a Kafka-compatible streaming broker, thread-per-core, io_uring, O_DIRECT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker: one shard (Kafka node) per core, shard i on port + i.
    Serve(BrokerConfig),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(config) => match spate::shard::launcher::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "spate serve failed");
                eprintln!("spate serve: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
