//! MLflow's whole-trace JSON (`Trace.to_json()`: `{"info": ..., "data":
//! {"spans": [...]}}`), one per line in `tracebox export --format jsonl`
//! and read back by `tracebox import`. `info` is the TraceInfo shape the
//! REST API returns (with assessments); spans are in the `traces.json`
//! artifact shape, which MLflow's own `Trace.from_json` reads.

use serde_json::{Value, json};

use super::dto;
use crate::api::error::ApiError;
use crate::domain::semconv::RawSpan;
use crate::domain::{Assessment, TraceInfo};
use crate::store::TraceDetail;

pub fn trace_dict(d: &TraceDetail) -> Value {
    let spans: Vec<Value> = d
        .spans
        .iter()
        .map(|s| dto::span_dict(&d.info.trace_id, s))
        .collect();
    json!({"info": dto::trace_info(&d.info), "data": {"spans": spans}})
}

/// One trace read back: its info, its assessments (ids and validity kept,
/// so importing twice changes nothing) and its spans.
pub struct ParsedTrace {
    pub info: TraceInfo,
    pub assessments: Vec<Assessment>,
    pub spans: Vec<RawSpan>,
}

pub fn parse_trace_dict(line: &[u8]) -> Result<ParsedTrace, ApiError> {
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| ApiError::invalid(format!("not a JSON trace: {e}")))?;
    let info_v = v
        .get("info")
        .cloned()
        .ok_or_else(|| ApiError::invalid("a trace needs an 'info' object"))?;
    let info_in: dto::TraceInfoIn = serde_json::from_value(info_v)
        .map_err(|e| ApiError::invalid(format!("invalid trace info: {e}")))?;
    let (info, assessments_in) = info_in.into_domain()?;
    let mut assessments = Vec::with_capacity(assessments_in.len());
    for a in assessments_in {
        let id = a.assessment_id.clone().filter(|i| !i.is_empty());
        let valid = a.valid.unwrap_or(true);
        let mut out = a.into_new(&info.trace_id)?;
        if let Some(id) = id {
            out.assessment_id = id;
        }
        out.valid = valid;
        assessments.push(out);
    }
    let spans = match v.get("data") {
        Some(data) if data.get("spans").is_some() => {
            dto::parse_traces_json(data.to_string().as_bytes())?
        }
        _ => Vec::new(),
    };
    Ok(ParsedTrace {
        info,
        assessments,
        spans,
    })
}
