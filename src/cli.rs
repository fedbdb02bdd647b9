//! Command-line interface: argument parsing only. Validation lives in
//! `Config::validate`; execution in `app` and the command modules.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, FileConfig, Limits, LogFormat, OpsConfig};

#[derive(Debug, Parser)]
#[command(
    name = "tracebox",
    version,
    about = "Self-hosted observability for LLM and agent applications, compatible with MLflow Tracing and OpenTelemetry"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "TRACEBOX_LOG_FORMAT"
    )]
    pub log_format: LogFormatArg,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(a: LogFormatArg) -> Self {
        match a {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (MLflow API, OTLP, web UI).
    Serve(ServeArgs),
    /// Copy the database to FILE, consistently, even while a server runs.
    Backup(crate::ops::backup::BackupArgs),
    /// Replace a (stopped) server's database with a backup.
    Restore(crate::ops::backup::RestoreArgs),
    /// Write traces as JSON lines (MLflow's trace shape) or CSV summaries.
    Export(crate::ops::export::ExportArgs),
    /// Load a JSON-lines export into a data directory (idempotent).
    Import(crate::ops::export::ImportArgs),
    /// Manage LLM judges: list, add, start, stop, rm, backfill.
    Judges(crate::judge::cli::JudgesArgs),
    /// Rebuild the full-text index from the database (refused while a
    /// server holds this data directory).
    Reindex(DataArgs),
    /// Measure performance (build with --release first).
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sustained OTLP/HTTP protobuf ingestion: concurrent senders posting
    /// batches of realistic 4-span GenAI traces; reports spans/s, CPU, RSS.
    Ingest(BenchIngestArgs),
    /// Trace search: filters, ordering, paging and full-text at scale.
    Search(SearchBenchArgs),
    /// The least CPU per span OTLP ingestion into SQLite and tantivy can
    /// cost here: decoding, a bare row per span, full-text indexing, each
    /// timed alone on `bench ingest`'s requests.
    Floor(BenchFloorArgs),
}

#[derive(Debug, Args)]
pub struct BenchFloorArgs {
    /// Data directory for the scratch database and index (must not exist;
    /// default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Spans to process (rounded up to whole batches).
    #[arg(long, default_value_t = 200_000)]
    pub spans: usize,
    /// Spans per OTLP request (and per SQLite transaction).
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Average bytes of inputs + outputs per span.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Throughput goal (spans/s) to compare the floor with.
    #[arg(long, default_value_t = 50_000)]
    pub goal: u64,
    /// Print the result as one JSON object too.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Benchmark a running server instead of starting one in-process
    /// (e.g. http://127.0.0.1:5000).
    #[arg(long)]
    pub url: Option<String>,
    /// Data directory for the in-process server (default: a fresh temporary
    /// directory, removed afterwards).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Spans to send in total (rounded up to whole batches).
    #[arg(long, default_value_t = 1_000_000)]
    pub spans: usize,
    /// Spans per OTLP request.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Concurrent senders, each waiting for its 200 before the next batch.
    #[arg(long, default_value_t = 4)]
    pub senders: usize,
    /// Average bytes of inputs + outputs per span.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Traces in a batch ended up to this long before it is sent (an OTel
    /// batch exporter sends every 5 s at most). Large values scatter start
    /// times over the past, so every time-ordered index takes random
    /// inserts.
    #[arg(long, default_value_t = 5_000)]
    pub time_spread_ms: u64,
    /// Print the result as one JSON object too.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SearchBenchArgs {
    /// Traces to generate (an existing benchmark data directory with at
    /// least this many is reused).
    #[arg(long, default_value_t = 1_000_000)]
    pub traces: usize,
    /// Data directory for the generated database and index.
    #[arg(long, default_value = "./tracebox-bench")]
    pub data: PathBuf,
    /// Timed runs per query (after warm-up).
    #[arg(long, default_value_t = 40)]
    pub runs: usize,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Options shared by every command that opens a data directory.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data directory (database, full-text index, tracebox.toml).
    #[arg(long, default_value = "./tracebox-data", env = "TRACEBOX_DATA")]
    pub data: PathBuf,
    /// Configuration file (default: tracebox.toml in the data directory).
    #[arg(long, env = "TRACEBOX_CONFIG")]
    pub config: Option<PathBuf>,
}

impl DataArgs {
    pub fn file_config(&self) -> anyhow::Result<FileConfig> {
        match &self.config {
            Some(p) => FileConfig::load(p, true),
            None => FileConfig::load(&self.data.join("tracebox.toml"), false),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Address to bind. Anything but loopback requires --auth-token.
    #[arg(long, default_value = "127.0.0.1", env = "TRACEBOX_HOST")]
    pub host: IpAddr,
    /// HTTP port (MLflow API, OTLP/HTTP, UI); 0 picks a free port.
    #[arg(long, default_value_t = 5000, env = "TRACEBOX_PORT")]
    pub port: u16,
    /// OTLP/gRPC port; 0 disables gRPC.
    #[arg(long, default_value_t = 4317, env = "TRACEBOX_OTLP_GRPC_PORT")]
    pub otlp_grpc_port: u16,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024, env = "TRACEBOX_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// Most spans accepted in one request.
    #[arg(
        long,
        default_value_t = 100_000,
        env = "TRACEBOX_MAX_SPANS_PER_REQUEST"
    )]
    pub max_spans_per_request: usize,
    /// Token required as `Authorization: Bearer` (or basic-auth password).
    #[arg(long, env = "TRACEBOX_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Allow a non-loopback bind without authentication.
    #[arg(long, env = "TRACEBOX_INSECURE_PUBLIC")]
    pub insecure_public: bool,
    /// fsync every commit (survives power loss, not only crashes).
    #[arg(long, env = "TRACEBOX_SYNC_FULL")]
    pub sync_full: bool,
    /// Delete traces older than this many days (0 keeps them forever).
    #[arg(long, default_value_t = 90, env = "TRACEBOX_RETENTION_DAYS")]
    pub retention_days: u32,
    /// Keep the data directory under this size, deleting the oldest traces
    /// first (e.g. 20G, 500M; "off" disables).
    #[arg(long, default_value = "50G", env = "TRACEBOX_MAX_DISK")]
    pub max_disk: String,
    /// Also send every accepted span to this OTLP/HTTP endpoint (a base URL
    /// gets `/v1/traces` appended), through a durable outbox.
    #[arg(long, env = "TRACEBOX_FORWARD_OTLP")]
    pub forward_otlp: Option<String>,
    /// Header sent with every forwarded request, as NAME=VALUE (repeatable),
    /// e.g. `authorization=Bearer xyz`.
    #[arg(long = "forward-otlp-header", value_name = "NAME=VALUE")]
    pub forward_otlp_headers: Vec<String>,
    /// Request bytes in flight at once (bodies, plus room to inflate
    /// compressed ones); beyond it requests wait briefly, then get 503.
    #[arg(long, default_value = "256M", env = "TRACEBOX_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: String,
    /// Largest single attribute, tag or metadata value (413 beyond).
    #[arg(long, default_value = "16M", env = "TRACEBOX_MAX_ATTRIBUTE_BYTES")]
    pub max_attribute_bytes: String,
    /// Deepest JSON nesting accepted in bodies and attribute values (400 beyond).
    #[arg(long, default_value_t = 64, env = "TRACEBOX_MAX_NESTING_DEPTH")]
    pub max_nesting_depth: usize,
    /// Seconds between retention runs.
    #[arg(long, default_value_t = 3600, env = "TRACEBOX_RETENTION_INTERVAL_SECS")]
    pub retention_interval_secs: u64,
    /// Testing hook: cap the database at this many pages to simulate a full disk.
    #[arg(long, hide = true)]
    pub db_max_pages: Option<u64>,
}

/// Parses sizes such as `50G`, `500M`, `1024`; `off` means no limit.
pub fn parse_size(s: &str) -> anyhow::Result<Option<u64>> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") || t == "0" {
        return Ok(None);
    }
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size '{s}': use e.g. 500M, 20G or off"))?;
    Ok(Some((n * mult as f64) as u64))
}

/// Parses `NAME=VALUE` (or `NAME: VALUE`).
fn parse_header(h: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = h
        .split_once('=')
        .or_else(|| h.split_once(':'))
        .ok_or_else(|| anyhow::anyhow!("invalid header '{h}': use NAME=VALUE"))?;
    let (k, v) = (k.trim(), v.trim());
    if k.is_empty() {
        anyhow::bail!("invalid header '{h}': the name is empty");
    }
    Ok((k.to_ascii_lowercase(), v.to_string()))
}

impl ServeArgs {
    pub fn into_config(self) -> anyhow::Result<Config> {
        let file = self.data.file_config()?;
        Ok(Config {
            data_dir: self.data.data,
            host: self.host,
            port: self.port,
            otlp_grpc_port: (self.otlp_grpc_port != 0).then_some(self.otlp_grpc_port),
            max_body_bytes: self.max_body_bytes,
            limits: Limits {
                max_spans_per_request: self.max_spans_per_request,
                max_attribute_bytes: parse_size(&self.max_attribute_bytes)?
                    .map_or(usize::MAX, |n| n as usize),
                max_nesting_depth: self.max_nesting_depth,
            },
            auth_token: self.auth_token.filter(|t| !t.is_empty()),
            insecure_public: self.insecure_public,
            sync_full: self.sync_full,
            file,
            retention_days: self.retention_days,
            max_disk_bytes: parse_size(&self.max_disk)?,
            forward_otlp: self.forward_otlp,
            ops: OpsConfig {
                max_inflight_bytes: parse_size(&self.max_inflight_bytes)?
                    .map_or(usize::MAX, |n| n as usize),
                retention_interval: std::time::Duration::from_secs(
                    self.retention_interval_secs.max(1),
                ),
                forward_headers: self
                    .forward_otlp_headers
                    .iter()
                    .map(|h| parse_header(h))
                    .collect::<anyhow::Result<_>>()?,
                db_max_pages: self.db_max_pages,
                ..OpsConfig::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50G").unwrap(), Some(50 << 30));
        assert_eq!(parse_size("1.5k").unwrap(), Some(1536));
        assert_eq!(parse_size("off").unwrap(), None);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
