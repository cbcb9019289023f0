//! Drops broker-to-broker packets with nftables, so a test can cut a broker off from its peers
//! the way a real network partition does (packets vanish; nothing is refused) while clients,
//! which connect from 127.0.0.1, still reach every broker.
//!
//! Brokers dial each other from their own `--host` (127.0.1.i), so a rule matches one broker's
//! traffic to another by source and destination address; it also names the cluster's ports, so
//! clusters of other tests running at the same time on the same hosts are untouched.
//!
//! Each `Firewall` owns one nftables table named after the test process and a counter; dropping
//! it deletes the table. Tables left by test processes that died are deleted by the next
//! `Firewall::new`. Needs root (CAP_NET_ADMIN) and the `nft` command (Debian's nftables).

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every table this harness makes: `spate_test_<pid>_<n>`.
const TABLE_PREFIX: &str = "spate_test_";

/// One broker's side of a cut: its host and its ports.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: String,
    pub ports: Vec<u16>,
}

/// One nftables table of drop rules, replaced as a whole by `drop_between` and `clear`.
pub struct Firewall {
    table: String,
}

impl Firewall {
    /// A firewall with no rules yet; removes tables left behind by dead test processes.
    pub fn new() -> Result<Firewall, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        remove_stale_tables()?;
        Ok(Firewall {
            table: format!(
                "{TABLE_PREFIX}{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        })
    }

    /// Drops every packet between `isolated` and each of `peers`, both ways, on their ports
    /// (connections either side dialled). Replaces any earlier rules of this firewall.
    pub fn drop_between(&self, isolated: &Endpoint, peers: &[Endpoint]) -> Result<(), String> {
        let mut rules = String::new();
        for peer in peers {
            for (from, to) in [(isolated, peer), (peer, isolated)] {
                // Packets to the other side's listeners, and answers from this side's.
                rules.push_str(&format!(
                    "    ip saddr {} ip daddr {} tcp dport {{ {} }} drop\n",
                    from.host,
                    to.host,
                    ports(&to.ports)
                ));
                rules.push_str(&format!(
                    "    ip saddr {} ip daddr {} tcp sport {{ {} }} drop\n",
                    from.host,
                    to.host,
                    ports(&from.ports)
                ));
            }
        }
        let table = &self.table;
        nft(&format!(
            "add table ip {table}\ndelete table ip {table}\n\
             table ip {table} {{\n  chain output {{\n    \
             type filter hook output priority 0; policy accept;\n{rules}  }}\n}}\n"
        ))
    }

    /// Removes every rule of this firewall.
    pub fn clear(&self) -> Result<(), String> {
        let table = &self.table;
        nft(&format!("add table ip {table}\ndelete table ip {table}\n"))
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if let Err(error) = self.clear() {
            eprintln!("firewall: {error}");
        }
    }
}

fn ports(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `nft -f -` on `script`.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            format!("nft: {error} (the cut tests need root and Debian's nftables package)")
        })?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .map_err(|error| format!("nft stdin: {error}"))?;
    let output = child
        .wait_with_output()
        .map_err(|error| format!("nft: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed ({}): {}\nscript:\n{script}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Deletes the tables of test processes that no longer run (killed before their `Drop`).
fn remove_stale_tables() -> Result<(), String> {
    let output = Command::new("nft")
        .args(["list", "tables", "ip"])
        .output()
        .map_err(|error| {
            format!("nft: {error} (the cut tests need root and Debian's nftables package)")
        })?;
    if !output.status.success() {
        return Err(format!(
            "nft list tables: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(table) = line.trim().strip_prefix("table ip ") else {
            continue;
        };
        let Some(pid) = table
            .strip_prefix(TABLE_PREFIX)
            .and_then(|rest| rest.split('_').next())
        else {
            continue;
        };
        if fs::metadata(format!("/proc/{pid}")).is_err() {
            // Add first: another test process may be deleting the same table right now.
            nft(&format!("add table ip {table}\ndelete table ip {table}\n"))?;
        }
    }
    Ok(())
}
