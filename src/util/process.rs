//! Process-wide tuning for long training runs: the allocator setting, which
//! [`crate::finetune::train::finetune`] applies (harmless to any other work of the process), and
//! candle's thread setting, which only the `isolab` binary and the training benchmark apply (it
//! changes the environment and slows extraction).

/// Asks glibc's allocator to keep freed memory instead of returning it to the kernel at once.
///
/// A training step allocates and frees hundreds of buffers of a few megabytes; with glibc's
/// defaults each comes from a fresh `mmap`, and zeroing new pages took a third of a step's time
/// here. With the mmap threshold at its maximum (32 MiB) and trimming at 1 GiB they are reused.
/// Process-wide; a no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; any value is valid to pass.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
    }
}

/// Gives candle's element-wise operations no threads of their own, for a training process.
///
/// candle runs large element-wise operations (and the zero-fill and add with which its backward
/// pass accumulates every gradient) on a pool of its own threads, which spin for a while after
/// each operation; the training kernels and the matrix products run on rayon's threads. On this
/// project's 2-core machine the two pools contend, and a training step took about 10% longer
/// than with candle's work on the calling thread (`CANDLE_NUM_THREADS=1`), which is what this
/// sets, unless the variable is already set. Inference is faster with candle's pool, so only
/// the `finetune` command and the step benchmark call this. It must run before candle's first
/// element-wise operation and before the process starts any other thread (it changes the
/// environment).
pub fn elementwise_on_calling_thread() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
