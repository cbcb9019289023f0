//! The checker: judges a `History` and reports each anomaly with the records involved.
//!
//! Anomalies (each fails the round):
//! - `LostAcked`: a record acknowledged with acks=all is absent from the final read;
//! - `AckedAtWrongOffset`: it is present, but not at the offset its acknowledgement named;
//! - `Duplicate`: a record of the idempotent producer stored at two offsets (in any reads);
//! - `OffsetConflict`: one offset of a partition holding two different records across reads;
//! - `NonMonotonic`: a consumer session reading a partition at an offset not above the last one
//!   it read there (a new session, at each assignment, may start again lower);
//! - `ReadThenLost`: a record read by a consumer at an offset the final read no longer has
//!   (truncated after it was read);
//! - `Phantom`: a record read that was never sent, or read in another partition than it was sent;
//! - `CommitLost`: a group consumer's session reading a partition first below an offset the
//!   group's coordinator acknowledged committing there before the session began (the committed
//!   offset went back: an acknowledged commit was lost).
//!
//! Counted, not failures: acks=1 records lost or moved, acks=all records answered with an error
//! (indeterminate: present or absent are both allowed), records without any answer, and copies
//! of non-idempotent records (their producers do not retry, so these should stay 0).
//!
//! The final read must cover every partition from offset 0 to its high watermark after all faults
//! healed; the checker cannot tell a short final read from a lost tail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::history::{AckResult, Event, FINAL_READER, History, ProducerKind};

/// Anomalies printed per kind in a report; the counts are always complete.
const ANOMALIES_PRINTED_PER_KIND_MAX: usize = 10;

/// One violation, with the records involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    LostAcked {
        producer: ProducerKind,
        value: String,
        partition: i32,
        acked_offset: i64,
    },
    AckedAtWrongOffset {
        value: String,
        partition: i32,
        acked_offset: i64,
        stored_offsets: Vec<i64>,
    },
    Duplicate {
        value: String,
        partition: i32,
        offsets: Vec<i64>,
    },
    OffsetConflict {
        partition: i32,
        offset: i64,
        /// Each value seen there, with the readers that saw it.
        values: BTreeMap<String, BTreeSet<String>>,
    },
    NonMonotonic {
        consumer: String,
        session: u64,
        partition: i32,
        previous_offset: i64,
        offset: i64,
        value: String,
    },
    ReadThenLost {
        value: String,
        partition: i32,
        offset: i64,
        readers: BTreeSet<String>,
    },
    Phantom {
        reader: String,
        partition: i32,
        offset: i64,
        value: String,
        sent_to: Option<i32>,
    },
    CommitLost {
        consumer: String,
        session: u64,
        partition: i32,
        committed: i64,
        first_read: i64,
    },
}

impl Anomaly {
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::LostAcked { .. } => "lost acknowledged record",
            Anomaly::AckedAtWrongOffset { .. } => "acknowledged at another offset",
            Anomaly::Duplicate { .. } => "idempotent duplicate",
            Anomaly::OffsetConflict { .. } => "two records at one offset",
            Anomaly::NonMonotonic { .. } => "non-monotonic read",
            Anomaly::ReadThenLost { .. } => "read, then truncated",
            Anomaly::Phantom { .. } => "phantom read",
            Anomaly::CommitLost { .. } => "acknowledged commit lost",
        }
    }
}

/// Counts of one producer's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerCounts {
    pub sent: usize,
    pub acked_ok: usize,
    pub acked_error: usize,
    /// Sent, never answered (the producer was closed with it still queued).
    pub unanswered: usize,
    /// Answered with an error, present in the final read (indeterminate, allowed).
    pub error_present: usize,
    /// Acknowledged, but not at its offset in the final read: a failure for acks=all (reported as
    /// an anomaly), counted for acks=1.
    pub acked_missing: usize,
    /// Records stored more than once (counted; an anomaly for the idempotent producer).
    pub stored_twice: usize,
}

/// Everything the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub producers: BTreeMap<ProducerKind, ProducerCounts>,
    /// Records read by consumers (not the final read), and by the final read.
    pub reads: usize,
    pub final_reads: usize,
    /// Distinct (consumer, session) pairs.
    pub sessions: usize,
    /// Commits the group's coordinator acknowledged, and group sessions whose first reads were
    /// checked against them.
    pub commits: usize,
    pub committed_sessions: usize,
    /// Records read by each consumer, over all its sessions.
    pub reads_by_consumer: BTreeMap<String, usize>,
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// Anomaly count by kind.
    pub fn anomaly_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for anomaly in &self.anomalies {
            *counts.entry(anomaly.kind()).or_insert(0) += 1;
        }
        counts
    }

    pub fn total(&self, field: impl Fn(&ProducerCounts) -> usize) -> usize {
        self.producers.values().map(field).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, c) in &self.producers {
            writeln!(
                f,
                "{}: sent {} acked {} errors {} unanswered {} error-but-present {} acked-but-missing {} stored-twice {}",
                kind.name(),
                c.sent,
                c.acked_ok,
                c.acked_error,
                c.unanswered,
                c.error_present,
                c.acked_missing,
                c.stored_twice
            )?;
        }
        writeln!(
            f,
            "reads {} {:?} in {} consumer sessions; final read {}; acknowledged commits {}, \
             checked at {} session starts; anomalies {:?}",
            self.reads,
            self.reads_by_consumer,
            self.sessions,
            self.final_reads,
            self.commits,
            self.committed_sessions,
            self.anomaly_counts()
        )?;
        for kind in self.anomaly_counts().keys() {
            let of_kind: Vec<&Anomaly> = self
                .anomalies
                .iter()
                .filter(|a| a.kind() == *kind)
                .collect();
            for anomaly in of_kind.iter().take(ANOMALIES_PRINTED_PER_KIND_MAX) {
                writeln!(f, "  {kind}: {anomaly:?}")?;
            }
            if of_kind.len() > ANOMALIES_PRINTED_PER_KIND_MAX {
                writeln!(
                    f,
                    "  ... and {} more",
                    of_kind.len() - ANOMALIES_PRINTED_PER_KIND_MAX
                )?;
            }
        }
        Ok(())
    }
}

/// The history indexed by what the checks ask.
#[derive(Default)]
struct Index {
    /// Value to (producer, partition) of its send.
    sends: BTreeMap<String, (ProducerKind, i32)>,
    /// Value to its acknowledgements.
    acks: BTreeMap<String, Vec<AckResult>>,
    /// (partition, offset) to the value the final read found there.
    final_at: BTreeMap<(i32, i64), String>,
    /// (partition, offset) to each value seen there by any read, with its readers.
    seen_at: BTreeMap<(i32, i64), BTreeMap<String, BTreeSet<String>>>,
    /// Value to every (partition, offset) any read saw it at.
    positions: BTreeMap<String, BTreeSet<(i32, i64)>>,
}

fn reader_label(consumer: &str, session: u64) -> String {
    format!("{consumer}#{session}")
}

impl Index {
    fn new(history: &History) -> Index {
        let mut index = Index::default();
        for event in &history.events {
            match event {
                Event::Send {
                    producer,
                    value,
                    partition,
                } => {
                    let earlier = index.sends.insert(value.clone(), (*producer, *partition));
                    assert!(earlier.is_none(), "the workload sent {value} twice");
                }
                Event::Ack { value, result, .. } => {
                    index
                        .acks
                        .entry(value.clone())
                        .or_default()
                        .push(result.clone());
                }
                Event::Read {
                    consumer,
                    session,
                    partition,
                    offset,
                    value,
                } => index.saw(reader_label(consumer, *session), *partition, *offset, value),
                Event::Assigned { .. } | Event::Committed { .. } => {}
                Event::FinalRead {
                    partition,
                    offset,
                    value,
                } => {
                    index.final_at.insert((*partition, *offset), value.clone());
                    index.saw(FINAL_READER.to_string(), *partition, *offset, value);
                }
            }
        }
        index
    }

    fn saw(&mut self, reader: String, partition: i32, offset: i64, value: &str) {
        self.seen_at
            .entry((partition, offset))
            .or_default()
            .entry(value.to_string())
            .or_default()
            .insert(reader);
        self.positions
            .entry(value.to_string())
            .or_default()
            .insert((partition, offset));
    }
}

/// Judges `history`.
pub fn check(history: &History) -> Report {
    let index = Index::new(history);
    let mut report = Report::default();
    check_acks(&index, &mut report);
    check_positions(&index, &mut report);
    check_reads(history, &index, &mut report);
    check_commits(history, &mut report);
    report
}

/// Each session's first read of a partition against the highest commit of its consumer there
/// acknowledged before the session began.
fn check_commits(history: &History, report: &mut Report) {
    // (consumer, partition) to the highest acknowledged commit so far.
    let mut committed: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    // (consumer, session) to the commits acknowledged when it began.
    let mut floors: BTreeMap<(&str, u64), BTreeMap<i32, i64>> = BTreeMap::new();
    let mut first_reads: BTreeSet<(&str, u64, i32)> = BTreeSet::new();
    for event in &history.events {
        match event {
            Event::Committed {
                consumer,
                partition,
                offset,
            } => {
                report.commits += 1;
                let highest = committed.entry((consumer, *partition)).or_insert(*offset);
                *highest = (*highest).max(*offset);
            }
            Event::Assigned { consumer, session } => {
                let floor = committed
                    .iter()
                    .filter(|((c, _), _)| c == consumer)
                    .map(|(&(_, partition), &offset)| (partition, offset))
                    .collect::<BTreeMap<i32, i64>>();
                report.committed_sessions += usize::from(!floor.is_empty());
                floors.insert((consumer, *session), floor);
            }
            Event::Read {
                consumer,
                session,
                partition,
                offset,
                ..
            } => {
                if !first_reads.insert((consumer, *session, *partition)) {
                    continue;
                }
                let floor = floors
                    .get(&(consumer.as_str(), *session))
                    .and_then(|floor| floor.get(partition));
                if let Some(&committed) = floor
                    && *offset < committed
                {
                    report.anomalies.push(Anomaly::CommitLost {
                        consumer: consumer.clone(),
                        session: *session,
                        partition: *partition,
                        committed,
                        first_read: *offset,
                    });
                }
            }
            Event::Send { .. } | Event::Ack { .. } | Event::FinalRead { .. } => {}
        }
    }
}

/// Acknowledged records against the final read, and the counts of every producer.
fn check_acks(index: &Index, report: &mut Report) {
    for kind in ProducerKind::ALL {
        report.producers.insert(kind, ProducerCounts::default());
    }
    for (value, &(producer, partition)) in &index.sends {
        let counts = report.producers.get_mut(&producer).expect("every kind");
        counts.sent += 1;
        let acks = index.acks.get(value).map(Vec::as_slice).unwrap_or_default();
        let acked_offset = acks.iter().find_map(|ack| match ack {
            AckResult::Ok { offset } => Some(*offset),
            AckResult::Error { .. } => None,
        });
        let stored_offsets: Vec<i64> = index
            .final_at
            .range((partition, i64::MIN)..=(partition, i64::MAX))
            .filter(|(_, v)| *v == value)
            .map(|(&(_, offset), _)| offset)
            .collect();
        match acked_offset {
            None if acks.is_empty() => counts.unanswered += 1,
            None => {
                counts.acked_error += 1;
                if !stored_offsets.is_empty() {
                    counts.error_present += 1;
                }
            }
            Some(acked_offset) => {
                counts.acked_ok += 1;
                if index.final_at.get(&(partition, acked_offset)) == Some(value) {
                    continue;
                }
                counts.acked_missing += 1;
                if !producer.acks_all() {
                    continue;
                }
                report.anomalies.push(if stored_offsets.is_empty() {
                    Anomaly::LostAcked {
                        producer,
                        value: value.clone(),
                        partition,
                        acked_offset,
                    }
                } else {
                    Anomaly::AckedAtWrongOffset {
                        value: value.clone(),
                        partition,
                        acked_offset,
                        stored_offsets,
                    }
                });
            }
        }
    }
}

/// Offsets holding two records, and records stored at two offsets.
fn check_positions(index: &Index, report: &mut Report) {
    for (&(partition, offset), values) in &index.seen_at {
        if values.len() > 1 {
            report.anomalies.push(Anomaly::OffsetConflict {
                partition,
                offset,
                values: values.clone(),
            });
        }
    }
    for (value, positions) in &index.positions {
        if positions.len() < 2 {
            continue;
        }
        let Some(&(producer, partition)) = index.sends.get(value) else {
            continue; // A phantom; reported by `check_reads`.
        };
        report
            .producers
            .get_mut(&producer)
            .expect("every kind")
            .stored_twice += 1;
        if producer.idempotent() {
            report.anomalies.push(Anomaly::Duplicate {
                value: value.clone(),
                partition,
                offsets: positions.iter().map(|&(_, offset)| offset).collect(),
            });
        }
    }
}

/// Each read against its send, its session's previous read, and the final read.
fn check_reads(history: &History, index: &Index, report: &mut Report) {
    // (consumer, session, partition) to the last offset read there.
    let mut last: BTreeMap<(&str, u64, i32), i64> = BTreeMap::new();
    let mut sessions: BTreeSet<(&str, u64)> = BTreeSet::new();
    // A truncated offset is reported once, with every reader that saw it.
    let mut truncated: BTreeSet<(i32, i64)> = BTreeSet::new();
    for event in &history.events {
        let (reader, partition, offset, value) = match event {
            Event::Read {
                consumer,
                session,
                partition,
                offset,
                value,
            } => {
                report.reads += 1;
                *report
                    .reads_by_consumer
                    .entry(consumer.clone())
                    .or_insert(0) += 1;
                sessions.insert((consumer, *session));
                let key = (consumer.as_str(), *session, *partition);
                if let Some(&previous_offset) = last.get(&key)
                    && *offset <= previous_offset
                {
                    report.anomalies.push(Anomaly::NonMonotonic {
                        consumer: consumer.clone(),
                        session: *session,
                        partition: *partition,
                        previous_offset,
                        offset: *offset,
                        value: value.clone(),
                    });
                }
                last.insert(key, *offset);
                if !index.final_at.contains_key(&(*partition, *offset))
                    && truncated.insert((*partition, *offset))
                {
                    report.anomalies.push(Anomaly::ReadThenLost {
                        value: value.clone(),
                        partition: *partition,
                        offset: *offset,
                        readers: index.seen_at[&(*partition, *offset)][value].clone(),
                    });
                }
                (reader_label(consumer, *session), *partition, *offset, value)
            }
            Event::FinalRead {
                partition,
                offset,
                value,
            } => {
                report.final_reads += 1;
                (FINAL_READER.to_string(), *partition, *offset, value)
            }
            Event::Send { .. }
            | Event::Ack { .. }
            | Event::Assigned { .. }
            | Event::Committed { .. } => continue,
        };
        let sent_to = index.sends.get(value).map(|&(_, p)| p);
        if sent_to != Some(partition) {
            report.anomalies.push(Anomaly::Phantom {
                reader,
                partition,
                offset,
                value: value.clone(),
                sent_to,
            });
        }
    }
    report.sessions = sessions.len();
}

#[cfg(test)]
mod tests {
    //! Crafted histories: one valid, one per anomaly (each must be reported with its records),
    //! and the allowed outcomes that are counted without failing.

    use super::*;

    const I: ProducerKind = ProducerKind::Idempotent;
    const A: ProducerKind = ProducerKind::AcksAll;
    const ONE: ProducerKind = ProducerKind::AcksOne;

    fn send(h: &mut History, producer: ProducerKind, n: u64, partition: i32) -> String {
        let value = producer.value(n);
        h.push(Event::Send {
            producer,
            value: value.clone(),
            partition,
        });
        value
    }

    fn ack(h: &mut History, value: &str, partition: i32, offset: i64) {
        h.push(Event::Ack {
            value: value.into(),
            partition,
            result: AckResult::Ok { offset },
        });
    }

    fn nack(h: &mut History, value: &str, partition: i32) {
        h.push(Event::Ack {
            value: value.into(),
            partition,
            result: AckResult::Error {
                code: "RequestTimedOut".into(),
            },
        });
    }

    fn read(
        h: &mut History,
        consumer: &str,
        session: u64,
        partition: i32,
        offset: i64,
        value: &str,
    ) {
        h.push(Event::Read {
            consumer: consumer.into(),
            session,
            partition,
            offset,
            value: value.into(),
        });
    }

    fn stored(h: &mut History, partition: i32, offset: i64, value: &str) {
        h.push(Event::FinalRead {
            partition,
            offset,
            value: value.into(),
        });
    }

    /// Three records of each producer on partition 0, acknowledged at offsets 0..9, read by a
    /// consumer and by the final read: valid.
    fn valid() -> (History, Vec<String>) {
        let mut h = History::new();
        let mut values = Vec::new();
        for (i, producer) in [I, A, ONE, I, A, ONE, I, A, ONE].into_iter().enumerate() {
            let value = send(&mut h, producer, i as u64, 0);
            ack(&mut h, &value, 0, i as i64);
            values.push(value);
        }
        for (offset, value) in values.iter().enumerate() {
            read(&mut h, "group", 1, 0, offset as i64, value);
            stored(&mut h, 0, offset as i64, value);
        }
        (h, values)
    }

    fn only(report: &Report) -> &Anomaly {
        assert_eq!(report.anomalies.len(), 1, "one anomaly:\n{report}");
        &report.anomalies[0]
    }

    #[test]
    fn a_valid_history_passes_with_its_counts() {
        let (h, _) = valid();
        let report = check(&h);
        assert!(report.is_valid(), "{report}");
        assert_eq!(report.total(|c| c.sent), 9);
        assert_eq!(report.total(|c| c.acked_ok), 9);
        assert_eq!(report.reads, 9);
        assert_eq!(report.final_reads, 9);
        assert_eq!(report.sessions, 1);
    }

    #[test]
    fn an_acks_all_record_missing_from_the_final_read_is_lost() {
        let (mut h, values) = valid();
        // Drop the final read of offset 4 (acks-all) and of offset 5 (acks=1, counted only);
        // the consumer did not read them either.
        h.events.retain(|e| match e {
            Event::FinalRead { offset, .. } | Event::Read { offset, .. } => {
                ![4, 5].contains(offset)
            }
            _ => true,
        });
        let report = check(&h);
        assert_eq!(
            only(&report),
            &Anomaly::LostAcked {
                producer: A,
                value: values[4].clone(),
                partition: 0,
                acked_offset: 4
            }
        );
        assert_eq!(
            report.producers[&ONE].acked_missing, 1,
            "acks=1 loss counted"
        );
        assert_eq!(report.producers[&I].acked_missing, 0);
    }

    #[test]
    fn an_acks_all_record_stored_at_another_offset_is_reported() {
        let mut h = History::new();
        let value = send(&mut h, A, 0, 2);
        ack(&mut h, &value, 2, 7);
        stored(&mut h, 2, 6, &value);
        assert_eq!(
            only(&check(&h)),
            &Anomaly::AckedAtWrongOffset {
                value,
                partition: 2,
                acked_offset: 7,
                stored_offsets: vec![6]
            }
        );
    }

    #[test]
    fn an_idempotent_record_at_two_offsets_is_a_duplicate() {
        let (mut h, values) = valid();
        stored(&mut h, 0, 9, &values[3]);
        let report = check(&h);
        assert_eq!(
            only(&report),
            &Anomaly::Duplicate {
                value: values[3].clone(),
                partition: 0,
                offsets: vec![3, 9]
            }
        );
        assert_eq!(report.producers[&I].stored_twice, 1);
    }

    #[test]
    fn a_plain_producer_s_copy_is_counted_not_failed() {
        let (mut h, values) = valid();
        stored(&mut h, 0, 9, &values[4]);
        let report = check(&h);
        assert!(report.is_valid(), "{report}");
        assert_eq!(report.producers[&A].stored_twice, 1);
    }

    #[test]
    fn two_records_at_one_offset_conflict() {
        let (mut h, values) = valid();
        // A second consumer saw offset 2 hold another record than the final read finds there.
        let other = send(&mut h, ONE, 100, 0);
        nack(&mut h, &other, 0);
        read(&mut h, "assigned", 1, 0, 2, &other);
        let report = check(&h);
        let Anomaly::OffsetConflict {
            partition: 0,
            offset: 2,
            values: seen,
        } = only(&report)
        else {
            panic!("an offset conflict:\n{report}");
        };
        assert_eq!(seen.len(), 2);
        assert!(seen[&other].contains("assigned#1"));
        assert!(seen[&values[2]].contains(FINAL_READER));
    }

    #[test]
    fn a_session_starting_below_an_acknowledged_commit_lost_it() {
        let (mut h, values) = valid();
        let commit = |h: &mut History, offset: i64| {
            h.push(Event::Committed {
                consumer: "group".into(),
                partition: 0,
                offset,
            })
        };
        let assigned = |h: &mut History, session: u64| {
            h.push(Event::Assigned {
                consumer: "group".into(),
                session,
            })
        };
        // Committed 5, then a session starting at 5: valid; one starting at 3: the commit was
        // lost. A commit acknowledged after a session began does not bind that session.
        commit(&mut h, 5);
        assigned(&mut h, 2);
        read(&mut h, "group", 2, 0, 5, &values[5]);
        commit(&mut h, 7);
        assigned(&mut h, 3);
        commit(&mut h, 8);
        read(&mut h, "group", 3, 0, 7, &values[7]);
        assert!(check(&h).is_valid(), "{}", check(&h));
        assigned(&mut h, 4);
        read(&mut h, "group", 4, 0, 3, &values[3]);
        read(&mut h, "group", 4, 0, 4, &values[4]);
        let report = check(&h);
        assert_eq!(
            only(&report),
            &Anomaly::CommitLost {
                consumer: "group".into(),
                session: 4,
                partition: 0,
                committed: 8,
                first_read: 3,
            }
        );
    }

    #[test]
    fn a_session_reading_backwards_is_non_monotonic_and_a_new_session_may() {
        let (mut h, values) = valid();
        // Session 2 of the group starts again at offset 3: allowed.
        read(&mut h, "group", 2, 0, 3, &values[3]);
        read(&mut h, "group", 2, 0, 4, &values[4]);
        assert!(check(&h).is_valid());
        // ... but going back within session 2 is not, nor is reading one offset twice.
        read(&mut h, "group", 2, 0, 4, &values[4]);
        let report = check(&h);
        assert_eq!(
            only(&report),
            &Anomaly::NonMonotonic {
                consumer: "group".into(),
                session: 2,
                partition: 0,
                previous_offset: 4,
                offset: 4,
                value: values[4].clone()
            }
        );
    }

    #[test]
    fn a_record_read_then_absent_from_the_final_read_was_truncated() {
        let (mut h, values) = valid();
        // acks=1 record at offset 8 read by the group, then gone (truncated tail).
        h.events
            .retain(|e| !matches!(e, Event::FinalRead { offset: 8, .. }));
        let report = check(&h);
        assert_eq!(
            only(&report),
            &Anomaly::ReadThenLost {
                value: values[8].clone(),
                partition: 0,
                offset: 8,
                readers: BTreeSet::from(["group#1".to_string()])
            }
        );
        assert_eq!(report.producers[&ONE].acked_missing, 1);
    }

    #[test]
    fn a_record_never_sent_or_in_another_partition_is_a_phantom() {
        let (mut h, values) = valid();
        read(&mut h, "assigned", 1, 1, 0, &values[0]);
        stored(&mut h, 1, 0, &values[0]);
        stored(&mut h, 0, 9, "garbage");
        let report = check(&h);
        let phantoms: Vec<&Anomaly> = report
            .anomalies
            .iter()
            .filter(|a| matches!(a, Anomaly::Phantom { .. }))
            .collect();
        assert_eq!(phantoms.len(), 3, "{report}");
        assert!(phantoms.contains(&&Anomaly::Phantom {
            reader: FINAL_READER.into(),
            partition: 0,
            offset: 9,
            value: "garbage".into(),
            sent_to: None
        }));
        assert!(phantoms.contains(&&Anomaly::Phantom {
            reader: "assigned#1".into(),
            partition: 1,
            offset: 0,
            value: values[0].clone(),
            sent_to: Some(0)
        }));
    }

    #[test]
    fn errors_and_unanswered_records_are_counted_whether_stored_or_not() {
        let mut h = History::new();
        let present = send(&mut h, A, 0, 0);
        nack(&mut h, &present, 0);
        let absent = send(&mut h, A, 1, 0);
        nack(&mut h, &absent, 0);
        let unanswered = send(&mut h, I, 2, 0);
        stored(&mut h, 0, 0, &present);
        let report = check(&h);
        assert!(report.is_valid(), "{report}");
        let counts = &report.producers[&A];
        assert_eq!((counts.acked_error, counts.error_present), (2, 1));
        assert_eq!(report.producers[&I].unanswered, 1);
        let _ = unanswered;
    }
}
