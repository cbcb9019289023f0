//! The `spate` command line: `spate serve` runs the broker, `spate bench` the load generator.
//!
//! This is the only place that prints for humans: `bench` progress lines, its summary table and
//! its errors go to stdout/stderr from here; the library logs through tracing.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use spate::bench::{BenchArgs, ProgressLine};
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
    /// Load generator: produce, consume or both (e2e) against any Kafka-compatible broker.
    /// Without a subcommand: e2e against a broker started in this process.
    Bench(BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The bench's own output is its report; an embedded broker's start-up chatter would bury it.
    // openraft warns at every failed heartbeat to a voter that is down (ten a second): the
    // controller logs its own view of that (fenced brokers, leader changes) instead.
    let log_level = match cli.command {
        Command::Serve(_) => "info,openraft=error",
        Command::Bench(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(config) => match spate::shard::launcher::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "spate serve failed");
                eprintln!("spate serve: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => bench(&args),
    }
}

/// Runs `spate bench`, printing progress, the summary and `--json`.
fn bench(args: &BenchArgs) -> ExitCode {
    let (mode, load) = args.mode_or_default();
    let json_path = load.json.clone();
    let mut print_progress = |line: &ProgressLine| println!("{line}");
    let summary = match spate::bench::run(mode, load, &mut print_progress) {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("spate bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", summary.table());
    if let Some(path) = json_path {
        if let Err(error) = std::fs::write(&path, summary.to_json()) {
            eprintln!("spate bench: writing {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
