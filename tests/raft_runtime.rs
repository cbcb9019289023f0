//! The glommio `AsyncRuntime` adapter against openraft's own runtime conformance suite, plus
//! the glommio-specific behaviour the adapter promises (see `spate::raft::runtime`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use openraft_rt::testing::Suite;
use openraft_rt::{AsyncRuntime, Mpsc, Oneshot};
use spate::raft::GlommioRuntime;
use spate::raft::runtime::JoinError;

type Rt = GlommioRuntime;

#[test]
fn openraft_runtime_conformance_suite_passes() {
    // Proves the adapter meets openraft-rt's conformance suite: spawn/join, timers, instants,
    // select, mpsc (backpressure, weak senders, peek), watch, oneshot, mutex, task-locals,
    // and the deterministic-RNG wrapper over our runtime.
    Suite::<Rt>::test_all();
}

#[test]
fn a_panicking_task_is_a_join_error_and_the_executor_lives_on() {
    // Proves a panic inside a spawned task is reported through its handle as a panic (what
    // openraft checks with `is_panic`) instead of unwinding out of the glommio executor.
    let mut rt = Rt::new(1);
    rt.block_on(async {
        let handle = Rt::spawn(async {
            panic!("boom in task");
        });
        let error = handle.await.unwrap_err();
        assert!(Rt::is_panic(&error));
        assert_eq!(error, JoinError::Panicked("boom in task".to_owned()));
        let after = Rt::spawn(async { 7 }).await.unwrap();
        assert_eq!(after, 7);
    });
}

#[test]
fn a_dropped_join_handle_detaches_and_the_task_keeps_running() {
    // Proves dropping a handle does not cancel the task (glommio's Task would), since openraft
    // drops handles of tasks that must go on.
    let mut rt = Rt::new(1);
    rt.block_on(async {
        let (tx, rx) = <Rt as AsyncRuntime>::Oneshot::channel::<u32>();
        drop(Rt::spawn(async move {
            Rt::sleep(Duration::from_millis(5)).await;
            tx.send(11).unwrap();
        }));
        assert_eq!(rx.await.unwrap(), 11);
    });
}

#[test]
fn a_sleep_made_before_it_is_awaited_fires_at_its_deadline() {
    // Proves Sleep measures from its creation (not from its first poll), and that a timeout
    // built ahead of time still expires on schedule.
    let mut rt = Rt::new(1);
    let sleep = Rt::sleep(Duration::from_millis(30));
    rt.block_on(async move {
        let start = Instant::now();
        Rt::sleep(Duration::from_millis(30)).await;
        sleep.await;
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(30));
        assert!(elapsed < Duration::from_millis(55), "took {elapsed:?}");

        let timeout = Rt::timeout(Duration::from_millis(20), std::future::pending::<()>());
        Rt::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        assert!(timeout.await.is_err());
        assert!(start.elapsed() < Duration::from_millis(10));
    });
}

#[test]
fn timers_fire_on_time_while_another_task_hogs_the_queue() {
    // Proves a Raft-style timer is not starved past its deadline by a task that yields only
    // when glommio asks it to (the preemption timer of the runtime's executor).
    let mut rt = Rt::new(1);
    rt.block_on(async {
        let stop = Rc::new(Cell::new(false));
        let hog_stop = stop.clone();
        let hog = Rt::spawn(async move {
            while !hog_stop.get() {
                let spin_until = Instant::now() + Duration::from_micros(200);
                while Instant::now() < spin_until {}
                glommio::yield_if_needed().await;
            }
        });
        let start = Instant::now();
        Rt::sleep(Duration::from_millis(20)).await;
        let late = start.elapsed() - Duration::from_millis(20);
        stop.set(true);
        hog.await.unwrap();
        assert!(late < Duration::from_millis(15), "timer {late:?} late");
    });
}

#[test]
fn a_wake_from_another_thread_reaches_a_parked_executor_promptly() {
    // Proves the foreign-wake path: spawn_blocking completes on its own thread and the idle
    // executor is woken at once, not at some later reactor poll.
    let mut rt = Rt::new(1);
    rt.block_on(async {
        let start = Instant::now();
        let value = Rt::spawn_blocking(|| {
            std::thread::sleep(Duration::from_millis(20));
            5
        })
        .await
        .unwrap();
        assert_eq!(value, 5);
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_millis(60), "took {elapsed:?}");
    });
}

#[test]
fn mpsc_backpressure_parks_the_sender_task_until_the_receiver_drains() {
    // Proves a full channel parks the sending task (the executor keeps running others) and
    // every message arrives once, in order, across tasks.
    let mut rt = Rt::new(1);
    rt.block_on(async {
        let (tx, mut rx) = <Rt as AsyncRuntime>::Mpsc::channel::<u32>(2);
        let producer = Rt::spawn(async move {
            for i in 0..100 {
                tx.send(i).await.unwrap();
            }
        });
        let mut received = Vec::new();
        while let Some(i) = rx.recv().await {
            received.push(i);
            if i % 10 == 0 {
                Rt::sleep(Duration::from_millis(1)).await;
            }
        }
        producer.await.unwrap();
        assert_eq!(received, (0..100).collect::<Vec<_>>());
    });
}
