//! Process-wide runtime settings for heavy CPU work (the binary applies them first thing; so do
//! the benchmarks, so they measure what users run).

/// Settings for a teacher and a trainer that compute side by side (measured in
/// bench/overlap-cores.sh; README, Performance):
/// - candle's elementwise ops run on one shared worker pool whose callers take turns and whose
///   workers spin between ops, so the teacher's and the trainer's ops queued behind each other:
///   with `CANDLE_NUM_THREADS=1` they run on the calling thread (the matrix products, attention
///   and LayerNorm stay parallel on rayon). A value the user sets is kept.
/// - glibc returned every large freed tensor to the kernel and faulted fresh pages in for the
///   next, and each unmap interrupts every core running one of the process's threads: blocks up
///   to 1 GiB are now served from and returned to the heap, which is trimmed only above 1 GiB.
///   (The limit was 32 MiB, glibc's documented maximum, but glibc 2.36 accepts more, and a
///   base-size teacher's activations at batch 32 × 128 tokens are 12–50 MiB each: with 32 MiB
///   an ELECTRA + ModernBERT bench pass still took 540–660 thousand page faults, with 1 GiB
///   110–120 thousand and ~10% less CPU time.)
///
/// Call it first thing in `main`, before any other thread exists (it sets an environment
/// variable and the allocator's parameters).
pub fn tune() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
