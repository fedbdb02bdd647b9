//! Assessments: feedback (a judgement of a trace or span) and expectations
//! (ground truth), from humans, code or LLM judges.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    Unspecified,
    Human,
    LlmJudge,
    Code,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Unspecified => "SOURCE_TYPE_UNSPECIFIED",
            SourceType::Human => "HUMAN",
            SourceType::LlmJudge => "LLM_JUDGE",
            SourceType::Code => "CODE",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SOURCE_TYPE_UNSPECIFIED" => Some(SourceType::Unspecified),
            "HUMAN" => Some(SourceType::Human),
            "LLM_JUDGE" | "AI_JUDGE" => Some(SourceType::LlmJudge),
            "CODE" => Some(SourceType::Code),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssessmentSource {
    pub source_type: SourceType,
    pub source_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssessmentKind {
    Feedback,
    Expectation,
}

impl AssessmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AssessmentKind::Feedback => "feedback",
            AssessmentKind::Expectation => "expectation",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AssessmentError {
    pub error_code: String,
    pub error_message: Option<String>,
    pub stack_trace: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub assessment_id: String,
    pub trace_id: String,
    pub name: String,
    pub kind: AssessmentKind,
    /// Any JSON value; `None` when a feedback carries only an error.
    pub value: Option<Value>,
    pub error: Option<AssessmentError>,
    pub source: AssessmentSource,
    pub rationale: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub span_id: Option<String>,
    /// The assessment this one overrides (`override_feedback`).
    pub overrides: Option<String>,
    /// False once overridden by a newer assessment.
    pub valid: bool,
    pub create_time_ms: i64,
    pub last_update_time_ms: i64,
}

impl Assessment {
    /// Fresh id in MLflow's shape: `a-` + 32 hex digits.
    pub fn new_id() -> String {
        format!("a-{}", uuid::Uuid::new_v4().simple())
    }

    /// Whether a feedback value counts as a pass for summaries; see [`polarity`].
    pub fn is_positive(&self) -> Option<bool> {
        polarity(self.value.as_ref()?)
    }
}

/// Whether a feedback value reads as positive or negative: `true`/`false`,
/// `"yes"`/`"no"` (and `pass`, `good`, ...), or a number on a 0..1 scale
/// (≥ 0.5 positive). Anything else (other labels, numbers outside 0..1 such
/// as 1-5 stars, lists, objects) has no polarity: counting a 1-star rating as
/// positive would make a "share of positive ratings" lie.
pub fn polarity(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "pass" | "passed" | "positive" | "good" => Some(true),
            "no" | "false" | "fail" | "failed" | "negative" | "bad" => Some(false),
            _ => None,
        },
        Value::Number(n) => n
            .as_f64()
            .filter(|f| (0.0..=1.0).contains(f))
            .map(|f| f >= 0.5),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn polarity_of_common_ratings() {
        for (v, want) in [
            (json!(true), Some(true)),
            (json!(false), Some(false)),
            (json!("Yes"), Some(true)),
            (json!(" no "), Some(false)),
            (json!(0.5), Some(true)),
            (json!(0.49), Some(false)),
            (json!(1), Some(true)),
            (json!(0), Some(false)),
            (json!(4), None),
            (json!("resolved"), None),
            (json!([true]), None),
            (json!(null), None),
        ] {
            assert_eq!(polarity(&v), want, "{v}");
        }
    }
}
