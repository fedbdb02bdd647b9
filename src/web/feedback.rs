//! Human feedback typed into the UI's forms (on a trace, a span or a whole
//! session): what the fields must hold, how they become an [`Assessment`]
//! with a `HUMAN` source, and the messages a page shows after a post.
//!
//! Outcomes travel back through the redirect as short codes, never as free
//! text, so a page never echoes anything from its URL. Knows nothing of
//! where the assessment is stored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::format;
use crate::domain::{Assessment, AssessmentKind, AssessmentSource, OtelSpanId, SourceType, now_ms};

/// Longest assessment name or reviewer name accepted (characters).
pub const MAX_NAME: usize = 200;
/// Longest comment or expected value accepted (bytes).
pub const MAX_TEXT: usize = 100_000;

/// The feedback form's fields (every one optional in the post).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FeedbackForm {
    pub csrf: String,
    pub name: String,
    /// `up`, `down`, or empty when a score is given.
    pub verdict: String,
    pub score: String,
    pub comment: String,
    pub source_id: String,
    /// Attach to this span instead of the whole trace (trace pages only).
    pub span_id: String,
    /// The span shown when the form was sent (to come back to it).
    pub back_span: String,
}

/// The message for a form outcome code, if it is one.
pub fn message(code: &str) -> Option<&'static str> {
    Some(match code {
        "feedback" => "Feedback saved.",
        "expectation" => "Expectation saved.",
        "deleted" => "Assessment deleted.",
        "need-value" => "Choose thumbs up or down, or enter a score.",
        "both-values" => "Choose either thumbs up/down or a score, not both.",
        "bad-score" => "The score must be a number.",
        "need-name" => "Give the assessment a name.",
        "need-expectation" => "Enter the expected value.",
        "too-long" => "That is too long to save.",
        _ => return None,
    })
}

/// The (saved, error) messages a page shows for its `saved`/`error` codes.
pub fn outcome(saved: &str, error: &str) -> (Option<&'static str>, Option<&'static str>) {
    let saved = message(saved).filter(|_| matches!(saved, "feedback" | "expectation" | "deleted"));
    let error = message(error).filter(|_| saved.is_none());
    (saved, error)
}

/// A blank human assessment named `name` by reviewer `source_id` (the UI's
/// own name when empty), on a span when `span_id` is one.
pub fn human(trace_id: &str, name: &str, source_id: &str, span_id: &str) -> Assessment {
    let now = now_ms();
    Assessment {
        assessment_id: Assessment::new_id(),
        trace_id: trace_id.to_string(),
        name: name.trim().to_string(),
        kind: AssessmentKind::Feedback,
        value: None,
        error: None,
        source: AssessmentSource {
            source_type: SourceType::Human,
            source_id: match source_id.trim() {
                "" => "tracebox-ui".to_string(),
                s => format::truncate(s, MAX_NAME),
            },
        },
        rationale: None,
        metadata: BTreeMap::new(),
        span_id: OtelSpanId::from_hex(span_id.trim())
            .ok()
            .map(|s| s.to_hex()),
        overrides: None,
        valid: true,
        create_time_ms: now,
        last_update_time_ms: now,
    }
}

/// The feedback a form describes, named `default_name` when the form leaves
/// the name empty; or the code of what is wrong with it.
pub fn from_form(
    f: &FeedbackForm,
    trace_id: &str,
    default_name: &str,
) -> Result<Assessment, &'static str> {
    let name = match f.name.trim() {
        "" => default_name,
        n => n,
    };
    if name.chars().count() > MAX_NAME || f.comment.len() > MAX_TEXT {
        return Err("too-long");
    }
    let score = f.score.trim();
    let value = match (f.verdict.as_str(), score.is_empty()) {
        ("up" | "down", false) => return Err("both-values"),
        ("up", true) => Value::Bool(true),
        ("down", true) => Value::Bool(false),
        (_, false) => match score.parse::<f64>() {
            Ok(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 => Value::from(x as i64),
            Ok(x) if x.is_finite() => Value::from(x),
            _ => return Err("bad-score"),
        },
        (_, true) => return Err("need-value"),
    };
    let mut a = human(trace_id, name, &f.source_id, &f.span_id);
    a.value = Some(value);
    a.rationale = Some(f.comment.trim().to_string()).filter(|c| !c.is_empty());
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(verdict: &str, score: &str) -> FeedbackForm {
        FeedbackForm {
            verdict: verdict.into(),
            score: score.into(),
            comment: "  why  ".into(),
            ..Default::default()
        }
    }

    #[test]
    fn values_names_and_refusals() {
        let a = from_form(&form("up", ""), "tr-1", "feedback").unwrap();
        assert_eq!(
            (a.name.as_str(), a.value, a.rationale.as_deref()),
            ("feedback", Some(Value::Bool(true)), Some("why"))
        );
        assert_eq!(a.source.source_type, SourceType::Human);
        assert_eq!(a.source.source_id, "tracebox-ui");
        let a = from_form(&form("", "3"), "tr-1", "x").unwrap();
        assert_eq!(a.value, Some(Value::from(3)));
        let a = from_form(&form("", "0.25"), "tr-1", "x").unwrap();
        assert_eq!(a.value, Some(Value::from(0.25)));
        assert_eq!(
            from_form(&form("up", "1"), "t", "x").err(),
            Some("both-values")
        );
        assert_eq!(from_form(&form("", ""), "t", "x").err(), Some("need-value"));
        assert_eq!(
            from_form(&form("", "NaN"), "t", "x").err(),
            Some("bad-score")
        );
        let mut long = form("up", "");
        long.name = "n".repeat(MAX_NAME + 1);
        assert_eq!(from_form(&long, "t", "x").err(), Some("too-long"));
        assert_eq!(
            outcome("feedback", "bad-score"),
            (message("feedback"), None)
        );
        assert_eq!(outcome("bogus", "bad-score"), (None, message("bad-score")));
        assert_eq!(outcome("need-value", ""), (None, None));
    }
}
