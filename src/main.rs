//! The `tracebox` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc for Rust allocations: ingestion
/// allocates on the request threads and frees on the writer and indexer
/// threads, which glibc pays for in lock traffic and free-list
/// consolidation (a sixth of the CPU of `tracebox bench ingest`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    limit_malloc_arenas();
    purge_freed_memory_soon();
    let cli = tracebox::cli::Cli::parse();
    let format = cli.log_format.into();
    tracebox::logging::init(format);
    match tracebox::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracebox::logging::fatal(format, &e);
            ExitCode::FAILURE
        }
    }
}

/// mimalloc (v3) returns freed memory to the system only a second after it
/// is freed, and only when the allocator runs again. 250 ms instead: at
/// 10 ms the request threads spent ~1/20 of their time in `madvise` and
/// page faults, handing memory back between two uploads and faulting it in
/// again (`bench ingest`: 7% more spans/s, a third less system time at
/// 250 ms); at 1 s the peak RSS grew by 30 MB for no further gain. What
/// an idle server keeps is the store's idle trimmer's business: it forces
/// the purge (`mi_collect`) once uploads stop. Done first, before any
/// other thread exists (mimalloc's option setter is not thread safe).
fn purge_freed_memory_soon() {
    /// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (the bindings
    /// do not name it; the version is pinned in Cargo.lock).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // `MIMALLOC_PURGE_DELAY` in the environment wins, as mimalloc's own
    // settings do.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: only changes an allocator tuning option; no thread other than
    // this one exists yet.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 250) };
}

/// glibc gives each thread that allocates its own malloc arena (up to 8 per
/// core) and keeps freed memory in it. Uploads are decoded on whichever of
/// the blocking pool's threads is free, so after a while every arena holds
/// the peak of a few large requests and RSS grows far past the in-flight
/// byte budget (the 32-client load test measured 740 MiB against 390 MiB
/// with one arena per core). One arena per core keeps allocation contention
/// low, since no more threads than cores allocate at once. Done first,
/// before any thread exists; `MALLOC_ARENA_MAX` in the environment wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes allocator tuning; no thread other
        // than this one exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
