//! Hands memory freed by a large run back to the system.
//!
//! A first run at 100,000 instances briefly holds every instance's part
//! (about a kilobyte each) and the module's output; glibc's malloc keeps
//! what was freed for reuse, so without this the process would go on
//! showing its peak as its steady size.

/// Runs below this size are left alone: their garbage is small, and
/// trimming after every small change would cost more than it returns.
const LARGE: usize = 1000;

/// After a run that routed `routed` instances.
pub(crate) fn after_run(routed: usize) {
    if routed >= LARGE {
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only returns free heap memory to the system; it
    // touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
