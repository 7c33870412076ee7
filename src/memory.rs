//! Keeping resident memory close to what the stores hold. A scrape of a
//! large fleet allocates its body (megabytes) and many short-lived strings,
//! then frees them all; glibc's malloc keeps such memory by default, so RSS
//! would stay at the peak of the largest scrape. Elsewhere these are no-ops.

/// Large buffers stay mmapped, so freeing them returns them at once. glibc
/// otherwise raises its mmap threshold after the first large free, and later
/// large buffers come from the heap and stay there. Called once at start-up,
/// before any thread runs.
pub fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

/// Returns the free pages of every malloc arena to the system (after a
/// scrape has freed its temporaries).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
