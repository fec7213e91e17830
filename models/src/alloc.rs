//! Keeps freed tensor buffers in the process heap while training.
//!
//! A training step allocates and frees the same megabyte-sized activation buffers again and
//! again. With glibc's defaults those come from fresh `mmap`s or a heap top that is trimmed
//! back after every step, so each step paid page faults and zeroing for memory it had just
//! returned (measured in docs/performance.md, Round 3). Raising the mmap
//! and trim thresholds keeps that memory in the heap for reuse, as PyTorch's caching
//! allocator does: resident memory stays at the step's peak instead of shrinking between steps.

/// Allocations below this are served from the heap rather than `mmap` (32 MiB is glibc's
/// largest accepted value on 64-bit).
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the heap top is returned to the system only above this.
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Tunes the allocator for training (glibc only; elsewhere nothing). Process-wide and
/// idempotent: call it before the first step.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; both values are in range.
    unsafe {
        let ok = libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            & libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        debug_assert_eq!(ok, 1, "mallopt refused a threshold");
    }
}
