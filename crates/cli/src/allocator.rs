//! The `strata` process's allocator: mimalloc instead of glibc's malloc. Query execution
//! allocates and frees many short-lived batch buffers from several threads, and glibc spent
//! about 7% of TPC-H's CPU in malloc/free (see BENCHMARKS.md). Embedders of `strata-query`
//! choose their own allocator.
//!
//! One option is changed: how long mimalloc keeps freed memory before it gives it back to the
//! OS. Its default (1 s in mimalloc 3) kept about 120 MB more resident at the peak of TPC-H
//! SF 10 under `--memory-limit 2GiB`, which took the process past the limit's 1.15× promise
//! (RELIABILITY.md, "Memory"). 100 ms kept it within, for 2-9% of run time in two noisy runs;
//! returning memory at once saved another 200 MB but cost 20-30% in page faults.

use std::ffi::{c_int, c_long};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (the Rust bindings do not name it).
const PURGE_DELAY: c_int = 15;

/// How long freed memory stays with the process before it returns to the OS.
const PURGE_DELAY_MS: c_long = 100;

// mimalloc's option call. The library is linked in with the allocator; libmimalloc-sys
// declares it only behind a feature that pulls in another crate.
unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// Sets the allocator's options; called first thing in `main`.
pub(crate) fn configure() {
    // SAFETY: sets a process-wide integer option of the linked mimalloc; any value is valid.
    unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" {
        fn mi_option_get(option: c_int) -> c_long;
    }

    /// The allocator's purge delay in milliseconds.
    fn purge_delay_ms() -> c_long {
        // SAFETY: reads a process-wide integer option of the linked mimalloc.
        unsafe { mi_option_get(PURGE_DELAY) }
    }

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc 3's default purge delay is 1,000 ms: reading it at this index proves the
        // index names that option (an upgrade that renumbers the options fails here).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), 1000);
        }
        configure();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }
}
