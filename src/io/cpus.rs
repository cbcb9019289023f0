//! The CPUs this process may run on (the online CPUs its affinity mask allows), and the CPU time a
//! thread has used.
//!
//! Shards pin themselves to CPUs, so they must pick from the ones the operator left them:
//! `taskset -c 1 spate serve --cores 1` puts the shard on CPU 1, as it does any other program.

use std::io;
use std::time::Duration;

use glommio::CpuSet;

/// The online CPUs the calling thread's affinity mask allows, in ascending order.
pub fn usable_cpus() -> io::Result<Vec<usize>> {
    let online = CpuSet::online().map_err(|error| io::Error::other(error.to_string()))?;
    let allowed = affinity()?;
    let mut cpus: Vec<usize> = online
        .into_iter()
        .map(|location| location.cpu)
        .filter(|cpu| allowed.contains(cpu))
        .collect();
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() {
        return Err(io::Error::other("the affinity mask allows no online CPU"));
    }
    Ok(cpus)
}

/// CPU time the calling thread has used (user and system).
#[allow(unsafe_code)]
pub fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    if result != 0 {
        // Every Linux since 2.6.12 has this clock; without it the figure is simply zero.
        return Duration::ZERO;
    }
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

#[allow(unsafe_code)]
fn affinity() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain bits, valid when zeroed; sched_getaffinity writes at most
    // `size_of::<cpu_set_t>()` bytes into it, and CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_counts_this_threads_work_only() {
        let before = thread_cpu_time();
        let idle_started = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        let after_sleep = thread_cpu_time();
        assert!(
            after_sleep - before < idle_started.elapsed() / 2,
            "sleeping is not CPU time"
        );
        // Busy work shows up as CPU time, however the test threads share the cores.
        let mut x = 0u64;
        let busy_started = std::time::Instant::now();
        while thread_cpu_time() - after_sleep < Duration::from_millis(20) {
            assert!(
                busy_started.elapsed() < Duration::from_secs(10),
                "10 s of spinning never counted 20 ms of CPU time"
            );
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn a_thread_pinned_to_one_cpu_sees_only_that_cpu() {
        let all = usable_cpus().unwrap();
        let last = *all.last().unwrap();
        let seen = std::thread::spawn(move || {
            // SAFETY: as in `affinity`; the set is zeroed and then one bit is set.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(last, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                    0
                );
            }
            usable_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
    }
}
