//! The CPUs this process may run on: the online CPUs its affinity mask allows.
//!
//! Shards pin themselves to CPUs, so they must pick from the ones the operator left them:
//! `taskset -c 1 spate serve --cores 1` puts the shard on CPU 1, as it does any other program.

use std::io;

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
