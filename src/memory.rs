//! The process's heap policy: memory that libtorch frees is kept for the next step instead of
//! being handed back to the kernel.
//!
//! A training step allocates its activations afresh (about half a gigabyte for SmolLM2 at batch
//! 8) and frees them when the backward ends. With glibc's defaults, large freed blocks go back to
//! the kernel (blocks above the dynamic mmap threshold are unmapped, free space at the top of the
//! heap above the trim threshold is trimmed), so the next step faults the same memory in again
//! and the kernel zeroes every page of it: in a CuMA step that was a fifth of the CPU time
//! (`perf record`, README "Training throughput"). [`retain_freed_memory`] fixes both thresholds
//! once, before the first tensor exists: blocks up to 32 MiB come from the heap, and the heap is
//! trimmed only when more than 2 GiB of it is free. The process's resident memory then stays at
//! its peak, which a training run reaches in its first step anyway. The `cuma` binary calls it
//! first thing; a program that trains through this library calls it itself.
//!
//! The only `unsafe` of this crate: `mallopt` and (in the test) `getrusage`, plain C calls on
//! values.
#![allow(unsafe_code)]

/// glibc's largest allowed mmap threshold (`DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit targets).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Sets the heap policy of the module docs. Returns whether it was applied: `false` off glibc,
/// and when the user's own `GLIBC_TUNABLES` already set a `malloc` tunable (theirs wins).
pub fn retain_freed_memory() -> bool {
    !user_tunes_malloc() && apply()
}

/// Whether the user's `GLIBC_TUNABLES` sets a `malloc` tunable.
fn user_tunes_malloc() -> bool {
    std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc."))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt takes two integers and only changes the allocator's parameters (under its
    // own lock); no memory is passed.
    let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    // SAFETY: as above.
    let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) };
    mmap == 1 && trim == 1
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far.
    fn thread_faults() -> i64 {
        // SAFETY: getrusage writes one plain struct we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; RUSAGE_THREAD reads the calling thread's counters.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        assert_eq!(rc, 0, "getrusage failed");
        usage.ru_minflt
    }

    /// 32 blocks of 1 MiB, every page written, then all freed: what a training step does with its
    /// activations, at a smaller size. glibc's defaults trim the freed top of the heap, so every
    /// round faults its 8,192 pages in again (checked by hand with the policy left out); the
    /// policy keeps them.
    #[test]
    fn a_second_round_of_allocations_reuses_the_first_rounds_pages() {
        if user_tunes_malloc() {
            return; // the user's tunables win; nothing of ours to test
        }
        assert!(retain_freed_memory(), "mallopt refused the policy");
        // A fresh thread: its own arena, its own fault counter, no other test's allocations.
        let faults = std::thread::spawn(|| {
            let mut per_round = Vec::new();
            for _ in 0..3 {
                let before = thread_faults();
                let blocks: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8 + 1; 1 << 20]).collect();
                std::hint::black_box(&blocks);
                drop(blocks);
                per_round.push(thread_faults() - before);
            }
            per_round
        })
        .join()
        .expect("allocating thread");
        let pages = 32 * (1 << 20) / 4096;
        for later in &faults[1..] {
            assert!(
                *later < pages / 10,
                "freed pages went back to the kernel: {faults:?} faults per round"
            );
        }
    }
}
