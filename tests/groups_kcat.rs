//! kcat -G (the balanced consumer, librdkafka underneath) against a real `spate serve`: two
//! members split a topic, and a later member of the same group resumes at the commits.
//!
//! kcat is installed by `.ci/test`. Without kcat these tests print why and pass, unless `CI` is
//! set: in CI a missing kcat is a failure.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use common::{Broker, create_topic, run_with_timeout};

/// Bound on one kcat run: a group join, the initial rebalance delay and a few hundred lines.
const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

/// True if kcat can run. Panics if it cannot and `CI` is set.
fn kcat_available(test: &str) -> bool {
    match Command::new("kcat").arg("-V").output() {
        Ok(output) if output.status.success() => true,
        result => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: kcat is required in CI: {result:?}"
            );
            eprintln!("{test}: SKIPPED: cannot run kcat: {result:?}");
            false
        }
    }
}

fn kcat(args: &[String], stdin: &[u8]) -> Output {
    let mut command = Command::new("kcat");
    command.args(args);
    let output = run_with_timeout(&mut command, stdin, KCAT_TIMEOUT);
    assert!(
        output.status.success(),
        "kcat {args:?} exited with {}; stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A balanced consumer of `topic` in `group` that exits at the end of its partitions.
fn balanced_consumer_args(bootstrap: &str, group: &str, topic: &str) -> Vec<String> {
    [
        "-b",
        bootstrap,
        "-G",
        group,
        topic,
        "-e",
        "-q",
        "-f",
        "%s\\n",
        "-X",
        "auto.offset.reset=earliest",
        "-X",
        "auto.commit.interval.ms=200",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

// Proves two `kcat -G` members of one group together read every line exactly once (each owns
// its own partitions, and what one read before leaving is committed), and that a third member
// started later resumes at the commits and reads nothing again.
#[test]
fn kcat_balanced_consumers_split_a_topic_and_resume_at_commits() {
    if !kcat_available("kcat_balanced_consumers_split_a_topic_and_resume_at_commits") {
        return;
    }
    let broker = Broker::start(&["--group-initial-rebalance-delay-ms", "1000"]);
    let bootstrap = broker.bootstrap();
    let topic = "kcat-balanced";
    create_topic(&bootstrap, topic, 6, &[]);
    let lines: Vec<String> = (0..600).map(|i| format!("key-{i}:line {i}")).collect();
    let input = lines.join("\n") + "\n";
    let produce: Vec<String> = ["-P", "-b", &bootstrap, "-t", topic, "-K:"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    kcat(&produce, input.as_bytes());

    let members: Vec<_> = (0..2)
        .map(|_| {
            let args = balanced_consumer_args(&bootstrap, "kcat-group", topic);
            thread::spawn(move || kcat(&args, b"").stdout)
        })
        .collect();
    let mut got: Vec<String> = Vec::new();
    for member in members {
        let stdout = member.join().expect("kcat member");
        got.extend(String::from_utf8_lossy(&stdout).lines().map(str::to_owned));
    }
    let distinct: BTreeSet<&String> = got.iter().collect();
    let want: BTreeSet<String> = lines
        .iter()
        .map(|l| l.split_once(':').unwrap().1.to_owned())
        .collect();
    assert_eq!(got.len(), want.len(), "every line read exactly once");
    assert!(distinct.into_iter().eq(want.iter()), "the lines produced");

    let args = balanced_consumer_args(&bootstrap, "kcat-group", topic);
    let again = kcat(&args, b"");
    assert!(
        again.stdout.is_empty(),
        "a later member resumes at the commits: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    broker.stop();
}
