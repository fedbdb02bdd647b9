//! Prometheus metrics, exposed at `/metrics`.
//!
//! One registry owned by the app (no global state); every subsystem gets the
//! handles it updates. Counters are atomics, so recording never blocks.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::error::ApiError;
use crate::store::IngestOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JudgeLabel {
    pub judge: String,
}

pub struct Metrics {
    registry: Registry,
    pub traces_ingested: Counter,
    pub spans_ingested: Counter,
    pub spans_duplicate: Counter,
    pub ingest_bytes: Counter,
    pub rejects: Family<ReasonLabel, Counter>,
    pub query_seconds: Family<RouteLabel, Histogram>,
    pub judge_evaluated: Family<JudgeLabel, Counter>,
    pub judge_failed: Family<JudgeLabel, Counter>,
    pub judge_passed: Family<JudgeLabel, Counter>,
    pub judge_shed: Counter,
    pub judge_queue_depth: Gauge,
    pub store_bytes: Gauge,
    pub index_lag_spans: Gauge,
    pub write_queue_depth: Gauge,
    /// Request bytes currently holding room in the in-flight byte budget.
    pub inflight_bytes: Gauge,
    /// Responses by status class, every route.
    pub http_responses: Family<StatusLabel, Counter>,
    pub retention_deleted: Family<ReasonLabel, Counter>,
    pub retention_runs: Counter,
    pub forward_spans: Counter,
    pub forward_dropped_spans: Counter,
    pub forward_failures: Counter,
    /// Spans committed but not yet accepted by the upstream collector.
    pub forward_backlog_spans: Gauge,
    pub db_free_bytes: Gauge,
    pub disk_available_bytes: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tracebox");
        let m = Metrics {
            traces_ingested: Counter::default(),
            spans_ingested: Counter::default(),
            spans_duplicate: Counter::default(),
            ingest_bytes: Counter::default(),
            rejects: Family::default(),
            query_seconds: Family::new_with_constructor(latency_histogram),
            judge_evaluated: Family::default(),
            judge_failed: Family::default(),
            judge_passed: Family::default(),
            judge_shed: Counter::default(),
            judge_queue_depth: Gauge::default(),
            store_bytes: Gauge::default(),
            index_lag_spans: Gauge::default(),
            write_queue_depth: Gauge::default(),
            inflight_bytes: Gauge::default(),
            http_responses: Family::default(),
            retention_deleted: Family::default(),
            retention_runs: Counter::default(),
            forward_spans: Counter::default(),
            forward_dropped_spans: Counter::default(),
            forward_failures: Counter::default(),
            forward_backlog_spans: Gauge::default(),
            db_free_bytes: Gauge::default(),
            disk_available_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ingested_traces",
            "Traces touched by ingestion",
            m.traces_ingested.clone(),
        );
        registry.register("ingested_spans", "Spans stored", m.spans_ingested.clone());
        registry.register(
            "duplicate_spans",
            "Spans received again and ignored",
            m.spans_duplicate.clone(),
        );
        registry.register(
            "ingest_bytes",
            "Decompressed bytes of span uploads",
            m.ingest_bytes.clone(),
        );
        registry.register(
            "rejected_requests",
            "Ingestion requests refused, by reason",
            m.rejects.clone(),
        );
        registry.register(
            "query_duration_seconds",
            "Search and read latency",
            m.query_seconds.clone(),
        );
        registry.register(
            "judge_evaluations",
            "Judge evaluations completed",
            m.judge_evaluated.clone(),
        );
        registry.register(
            "judge_failures",
            "Judge evaluations that ended in an error",
            m.judge_failed.clone(),
        );
        registry.register(
            "judge_passes",
            "Judge evaluations with a passing verdict",
            m.judge_passed.clone(),
        );
        registry.register(
            "judge_shed",
            "Evaluations dropped because the judge queue was full",
            m.judge_shed.clone(),
        );
        registry.register(
            "judge_queue_depth",
            "Evaluations waiting",
            m.judge_queue_depth.clone(),
        );
        registry.register(
            "store_size_bytes",
            "Size of the data directory",
            m.store_bytes.clone(),
        );
        registry.register(
            "index_lag_spans",
            "Spans stored but not yet searchable by text",
            m.index_lag_spans.clone(),
        );
        registry.register(
            "write_queue_depth",
            "Write jobs waiting for the store",
            m.write_queue_depth.clone(),
        );
        registry.register(
            "inflight_request_bytes",
            "Request bytes holding room in the in-flight budget",
            m.inflight_bytes.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses by status code",
            m.http_responses.clone(),
        );
        registry.register(
            "retention_deleted_traces",
            "Traces deleted by retention, by reason (age or disk)",
            m.retention_deleted.clone(),
        );
        registry.register(
            "retention_runs",
            "Completed retention passes",
            m.retention_runs.clone(),
        );
        registry.register(
            "forwarded_spans",
            "Spans accepted by the --forward-otlp upstream",
            m.forward_spans.clone(),
        );
        registry.register(
            "forward_dropped_spans",
            "Spans the upstream rejected as invalid (not retried)",
            m.forward_dropped_spans.clone(),
        );
        registry.register(
            "forward_failures",
            "Forwarding attempts that failed and will be retried",
            m.forward_failures.clone(),
        );
        registry.register(
            "forward_backlog_spans",
            "Spans stored but not yet forwarded",
            m.forward_backlog_spans.clone(),
        );
        registry.register(
            "store_free_bytes",
            "Free pages inside the database file (reused before it grows)",
            m.db_free_bytes.clone(),
        );
        registry.register(
            "disk_available_bytes",
            "Space left on the file system holding the data directory",
            m.disk_available_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn record_ingest(&self, o: &IngestOutcome) {
        self.traces_ingested.inc_by(o.traces as u64);
        self.spans_ingested.inc_by(o.spans_inserted as u64);
        self.spans_duplicate.inc_by(o.spans_duplicate as u64);
    }

    pub fn record_bytes(&self, n: usize) {
        self.ingest_bytes.inc_by(n as u64);
    }

    /// Counts a refused ingestion request (HTTP requests are counted by the
    /// request middleware; gRPC calls by the gRPC service).
    pub fn record_reject(&self, e: &ApiError) {
        self.record_reject_reason(e.reason());
    }

    pub fn record_reject_reason(&self, reason: &str) {
        self.rejects
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn record_status(&self, status: u16) {
        self.http_responses
            .get_or_create(&StatusLabel {
                status: status.to_string(),
            })
            .inc();
    }

    pub fn observe_query(&self, route: &str, secs: f64) {
        self.query_seconds
            .get_or_create(&RouteLabel {
                route: route.into(),
            })
            .observe(secs);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}
