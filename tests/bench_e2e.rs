//! `spate bench` end to end: the built binary runs an e2e load against an embedded broker for
//! two seconds, and its `--json` report must hold non-zero, consistent figures.

use std::process::Command;

// Proves `spate bench e2e --embedded` produces and consumes records, that every acknowledged
// record is consumed (produced == consumed), that throughput is positive, that the latency
// percentiles are ordered, and that no error occurred.
#[test]
fn bench_e2e_embedded_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("out.json");
    let output = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "bench",
            "e2e",
            "--embedded",
            "--duration",
            "2s",
            "--partitions",
            "4",
            "--record-size",
            "512",
            "--cores",
            "1",
            "--topic",
            "bench-e2e-test",
            "--json",
        ])
        .arg(&json_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "spate bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let text = std::fs::read_to_string(&json_path).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let produced = &report["produced"];
    let consumed = &report["consumed"];
    let produced_records = produced["records"].as_u64().unwrap();
    assert!(produced_records > 0, "{text}");
    assert_eq!(
        produced_records,
        consumed["records"].as_u64().unwrap(),
        "{text}"
    );
    assert!(produced["mb_per_s"].as_f64().unwrap() > 0.0, "{text}");
    assert!(consumed["mb_per_s"].as_f64().unwrap() > 0.0, "{text}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{text}");
    assert_eq!(report["drained"].as_bool(), Some(true), "{text}");
    // Producing and consuming for 2 s takes some CPU, and never more than the generator's cores.
    let generator_cpu_pct = report["generator_cpu_pct"].as_f64().unwrap();
    assert!(
        generator_cpu_pct > 0.0 && generator_cpu_pct <= 100.5,
        "{text}"
    );
    for direction in [produced, consumed] {
        let latency = &direction["latency"];
        let p50 = latency["p50_ms"].as_f64().unwrap();
        let p99 = latency["p99_ms"].as_f64().unwrap();
        let max = latency["max_ms"].as_f64().unwrap();
        assert!(p50 > 0.0, "{text}");
        assert!(p50 <= p99, "{text}");
        assert!(p99 <= max, "{text}");
    }
    assert_eq!(report["config"]["mode"].as_str(), Some("e2e"), "{text}");
    assert!(
        stdout.contains("p99.99"),
        "the summary table is printed:\n{stdout}"
    );
}

// Proves bad input is a readable CLI error, not a panic.
#[test]
fn bench_rejects_bad_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["bench", "produce", "--rate", "fast"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--rate"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// Proves the generator and the embedded broker respect the CPUs `taskset` leaves the process:
// with one CPU there is none for the broker, which is a readable error, not a broker sharing the
// generator's core.
#[test]
fn an_embedded_run_confined_to_one_cpu_says_it_needs_another() {
    if Command::new("taskset").arg("--version").output().is_err() {
        eprintln!("skipped: taskset is not installed");
        return;
    }
    let output = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_spate"), "bench", "e2e"])
        .args(["--duration", "1s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("only [0]"), "{stderr}");
    assert!(stderr.contains("--bootstrap"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
