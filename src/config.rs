//! Typed configuration, parsed once at start-up from the command line, the
//! environment and `tracebox.toml`, then shared read-only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Limits on untrusted input; each violation is a clear 4xx.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_spans_per_request: usize,
    /// Largest single attribute value (bytes of JSON) kept as sent; larger
    /// values are rejected with 413.
    pub max_attribute_bytes: usize,
    /// Deepest JSON nesting accepted in attribute values and bodies.
    pub max_nesting_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_spans_per_request: 100_000,
            max_attribute_bytes: 16 * 1024 * 1024,
            max_nesting_depth: 64,
        }
    }
}

/// An OpenAI-compatible chat-completions endpoint for LLM judges
/// (`[gateway.NAME]` in `tracebox.toml`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct GatewayEndpoint {
    /// `POST {base_url}/chat/completions`
    pub base_url: String,
    pub model: String,
    /// Environment variable holding the API key, if any.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Most concurrent calls to this endpoint.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Per-call timeout in seconds.
    #[serde(default)]
    pub timeout_secs: Option<f64>,
}

/// The contents of `tracebox.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub gateway: BTreeMap<String, GatewayEndpoint>,
    #[serde(default)]
    pub judges: JudgeSettings,
}

/// `[judges]` in `tracebox.toml`: the judge runner's knobs. Every field has
/// a default; tests shorten the clocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSettings {
    /// A session is judged once it has been idle this long.
    #[serde(default = "default_session_idle")]
    pub session_idle_secs: f64,
    /// A trace is judged once no span or info has arrived for this long.
    #[serde(default = "default_settle")]
    pub trace_settle_secs: f64,
    /// Pending evaluations kept before new ones are shed (and counted).
    #[serde(default = "default_queue_cap")]
    pub queue_capacity: usize,
    /// A trace that never completes (root span or announced spans missing)
    /// is judged anyway after this long without writes.
    #[serde(default = "default_incomplete")]
    pub incomplete_trace_secs: f64,
    /// Model for builtin judges registered without one (MLflow's default).
    #[serde(default)]
    pub default_model: Option<String>,
    /// Concurrent calls per endpoint unless `[gateway.X] max_concurrency`.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Per-call timeout unless `[gateway.X] timeout_secs`.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: f64,
    /// Retries of one call on 429, 5xx, timeouts and connection errors.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry delay; doubles per retry (with jitter), capped at 30 s.
    #[serde(default = "default_retry_base")]
    pub retry_base_secs: f64,
    /// Consecutive failed calls that open an endpoint's circuit (pause it).
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit pauses its endpoint (doubles while it keeps
    /// failing, up to 10 minutes).
    #[serde(default = "default_circuit_open")]
    pub circuit_open_secs: f64,
    /// Evaluations in progress at once, over all endpoints.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// A claimed evaluation returns to the queue if its runner stops renewing
    /// its lease for this long (a crashed process).
    #[serde(default = "default_lease")]
    pub lease_secs: f64,
}

fn default_session_idle() -> f64 {
    300.0
}
fn default_settle() -> f64 {
    2.0
}
fn default_queue_cap() -> usize {
    100_000
}
fn default_incomplete() -> f64 {
    60.0
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> f64 {
    60.0
}
fn default_retries() -> u32 {
    4
}
fn default_retry_base() -> f64 {
    0.5
}
fn default_circuit_failures() -> u32 {
    5
}
fn default_circuit_open() -> f64 {
    30.0
}
fn default_in_flight() -> usize {
    16
}
fn default_lease() -> f64 {
    60.0
}

impl Default for JudgeSettings {
    fn default() -> Self {
        Self {
            session_idle_secs: default_session_idle(),
            trace_settle_secs: default_settle(),
            queue_capacity: default_queue_cap(),
            incomplete_trace_secs: default_incomplete(),
            default_model: None,
            max_concurrency: default_concurrency(),
            request_timeout_secs: default_timeout(),
            max_retries: default_retries(),
            retry_base_secs: default_retry_base(),
            circuit_failures: default_circuit_failures(),
            circuit_open_secs: default_circuit_open(),
            max_in_flight: default_in_flight(),
            lease_secs: default_lease(),
        }
    }
}

impl FileConfig {
    /// Reads `path` if it exists; a missing file is an empty configuration.
    pub fn load(path: &Path, required: bool) -> anyhow::Result<FileConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("invalid configuration file {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(FileConfig::default())
            }
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub host: IpAddr,
    pub port: u16,
    /// OTLP/gRPC port; `None` disables gRPC.
    pub otlp_grpc_port: Option<u16>,
    pub max_body_bytes: usize,
    pub limits: Limits,
    /// Bearer token (and basic-auth password) required on the API and UI.
    pub auth_token: Option<String>,
    /// Serve a non-loopback address without authentication (explicit opt-in).
    pub insecure_public: bool,
    /// `PRAGMA synchronous=FULL` (survive power loss, not just crashes).
    pub sync_full: bool,
    pub file: FileConfig,
    /// Delete traces older than this many days (0 keeps them forever).
    pub retention_days: u32,
    /// Delete the oldest traces while the data directory is bigger than this.
    pub max_disk_bytes: Option<u64>,
    /// Tee every accepted span to this OTLP/HTTP endpoint.
    pub forward_otlp: Option<String>,
    /// Operations knobs (overload, retention, forwarding); see [`OpsConfig`].
    pub ops: OpsConfig,
}

/// Operations settings: overload protection, retention schedule and
/// forwarding details. Grouped so that adding one does not touch every
/// place that builds a [`Config`].
#[derive(Debug, Clone)]
pub struct OpsConfig {
    /// Request bytes (bodies, and room to inflate compressed ones) that may
    /// be in flight at once; beyond it requests wait, then get 503.
    pub max_inflight_bytes: usize,
    /// How long a request waits for room in the byte budget before 503.
    pub inflight_wait: std::time::Duration,
    /// Time between retention runs (the first runs shortly after start).
    pub retention_interval: std::time::Duration,
    /// Extra headers sent with every forwarded OTLP request (e.g. auth).
    pub forward_headers: Vec<(String, String)>,
    /// Testing hook: cap the database at this many pages
    /// (`PRAGMA max_page_count`), to simulate a full disk.
    pub db_max_pages: Option<u64>,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            max_inflight_bytes: 256 << 20,
            inflight_wait: std::time::Duration::from_secs(5),
            retention_interval: std::time::Duration::from_secs(3600),
            forward_headers: Vec::new(),
            db_max_pages: None,
        }
    }
}

impl Config {
    /// A configuration for tests and embedding: loopback, port 0, no gRPC.
    pub fn for_dir(dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: dir.into(),
            host: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            otlp_grpc_port: None,
            max_body_bytes: 64 * 1024 * 1024,
            limits: Limits::default(),
            auth_token: None,
            insecure_public: false,
            sync_full: false,
            file: FileConfig::default(),
            retention_days: 0,
            max_disk_bytes: None,
            forward_otlp: None,
            ops: OpsConfig::default(),
        }
    }

    /// Refuses an unauthenticated server on a public address.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.host.is_loopback() && self.auth_token.is_none() && !self.insecure_public {
            anyhow::bail!(
                "refusing to serve {} without authentication: set --auth-token (or TRACEBOX_AUTH_TOKEN), \
                 or pass --insecure-public if the network is trusted",
                self.host
            );
        }
        if self.auth_token.as_deref().is_some_and(|t| t.len() < 8) {
            anyhow::bail!("--auth-token must be at least 8 characters");
        }
        if let Some(url) = &self.forward_otlp
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!(
                "--forward-otlp must be an http:// or https:// URL of an OTLP/HTTP traces endpoint (got '{url}')"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_gateway_form() {
        let f: FileConfig = toml::from_str(
            r#"
            [gateway.my-llm-endpoint]
            base_url = "http://127.0.0.1:8000/v1"   # POST {base_url}/chat/completions
            model = "gpt-4o-mini"
            api_key_env = "OPENAI_API_KEY"          # optional
            "#,
        )
        .unwrap();
        let g = &f.gateway["my-llm-endpoint"];
        assert_eq!(g.base_url, "http://127.0.0.1:8000/v1");
        assert_eq!(g.model, "gpt-4o-mini");
        assert_eq!(g.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    }

    #[test]
    fn public_bind_needs_auth() {
        let mut c = Config::for_dir("/tmp/x");
        c.host = "0.0.0.0".parse().unwrap();
        assert!(c.validate().is_err());
        c.auth_token = Some("s3cret-token".into());
        assert!(c.validate().is_ok());
    }
}
