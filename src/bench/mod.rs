//! `tracebox bench ...`: performance measurements run from the binary, so
//! they exercise the real server code (release build) with one command.
//! Each benchmark lives in its own file; this module only dispatches and
//! holds the process-resource probes they share.
//!
//! Benchmarks measure; tests never assert timings.

pub mod floor;
pub mod ingest;
pub mod search;

use crate::cli::{BenchArgs, BenchCommand};

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Ingest(a) => ingest::run(a),
        BenchCommand::Search(a) => search::run(a),
        BenchCommand::Floor(a) => floor::run(a),
    }
}

/// A fresh path under the system's temporary directory for benchmark
/// `kind`'s scratch data (not created; the caller removes it afterwards).
pub fn scratch_dir(kind: &str) -> anyhow::Result<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    Ok(std::env::temp_dir().join(format!(
        "tracebox-bench-{kind}-{}-{nanos}",
        std::process::id()
    )))
}

/// CPU time (user, system) in seconds, of the process or the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub user: f64,
    pub sys: f64,
}

impl CpuTime {
    pub fn total(&self) -> f64 {
        self.user + self.sys
    }
    pub fn since(&self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            sys: self.sys - earlier.sys,
        }
    }
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut r);
        r
    }
}

fn secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// CPU used by the whole process so far.
pub fn process_cpu() -> CpuTime {
    let r = rusage(libc::RUSAGE_SELF);
    CpuTime {
        user: secs(r.ru_utime),
        sys: secs(r.ru_stime),
    }
}

/// CPU used by the calling thread so far.
pub fn thread_cpu() -> CpuTime {
    let r = rusage(libc::RUSAGE_THREAD);
    CpuTime {
        user: secs(r.ru_utime),
        sys: secs(r.ru_stime),
    }
}

/// Peak resident set size of the process, in bytes.
pub fn peak_rss_bytes() -> u64 {
    // Linux reports ru_maxrss in kilobytes.
    rusage(libc::RUSAGE_SELF).ru_maxrss as u64 * 1024
}

/// CPU seconds used so far by each thread of this process, summed by
/// thread name (`tracebox-writer`, `tokio-rt-worker`, ...). Linux only;
/// empty elsewhere.
pub fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let dir = t.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name; utime and stime are the
        // 14th and 15th fields of the whole line.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(u), Some(s)) = (f.get(11), f.get(12)) else {
            continue;
        };
        let secs = (u.parse::<f64>().unwrap_or(0.0) + s.parse::<f64>().unwrap_or(0.0)) / ticks;
        *out.entry(name.trim().to_string()).or_insert(0.0) += secs;
    }
    out
}

/// Resident and peak memory of this process in MB, from /proc (Linux).
pub fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The p-th percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
