//! Plain data: experiments, traces, spans, assessments and their identifiers.
//!
//! Nothing here does I/O or knows a wire format. The API layer converts its
//! DTOs into these types (that conversion is where 400s come from), the store
//! persists them, the UI and judges read them.

mod assessment;
pub mod chat;
mod ids;
mod scorer;
pub mod searchable;
pub mod semconv;
mod span;
mod trace;

pub use assessment::{
    Assessment, AssessmentError, AssessmentKind, AssessmentSource, SourceType, polarity,
};
pub use ids::{IdError, OtelSpanId, OtelTraceId, TraceId};
pub use scorer::{OnlineConfig, ScorerVersion};
pub use span::{SentJson, Span, SpanEvent, SpanStatusCode, TokenUsage};
pub use trace::{Experiment, TraceInfo, TraceState, metadata_keys, tag_keys};

/// Spans of one upload with the trace-level hints found on them.
#[derive(Debug, Clone, Default)]
pub struct SpanBatch {
    pub spans: Vec<Span>,
    pub hints: std::collections::HashMap<OtelTraceId, semconv::TraceHints>,
}

impl SpanBatch {
    /// Applies conventions to raw spans and collects their hints.
    pub fn from_raw(raw: impl IntoIterator<Item = semconv::RawSpan>) -> Self {
        let mut batch = SpanBatch::default();
        for r in raw {
            let (span, hints) = semconv::normalize(r);
            if !hints.is_empty() {
                batch.hints.entry(span.trace_id).or_default().merge(hints);
            }
            batch.spans.push(span);
        }
        batch
    }
}

/// Milliseconds since the Unix epoch, the unit MLflow uses for trace times.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
