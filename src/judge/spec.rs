//! What a `serialized_scorer` payload asks for: which judge, which model,
//! trace- or session-level. Also builds payloads for `tracebox judges add`
//! in exactly the shape MLflow's client writes (see `payloads`).
//!
//! Interprets MLflow's `SerializedScorer` format (`genai/scorers/base.py`);
//! knows nothing of storage, HTTP or model calls.

use serde_json::{Map, Value, json};

use super::payloads::BUILTIN_PAYLOADS;
use super::prompts;
use super::pyfmt;

/// MLflow's default judge model for builtins registered without one.
pub const MLFLOW_DEFAULT_MODEL: &str = "openai:/gpt-4.1-mini";

/// A make_judge (InstructionsJudge) definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Instructions {
    pub instructions: String,
    /// JSON schema of `result` (`{"type": "boolean"}`, `{"enum": [...]}`...).
    pub value_type: Value,
    pub rationale_first: bool,
    /// Merged into the chat request (temperature, ...).
    pub inference_params: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Guidelines {
        guidelines: Vec<String>,
    },
    ExpectationsGuidelines,
    Safety,
    RelevanceToQuery,
    Correctness,
    RetrievalGroundedness,
    /// Deterministic, no model: `types` None means every type tracebox knows.
    Pii {
        types: Option<Vec<String>>,
    },
    /// Session-level builtins and session make_judges: an instructions
    /// judge over the conversation.
    Session(Instructions),
    /// A make_judge over one trace's inputs/outputs/expectations/trace.
    Instructions(Instructions),
    /// Registered (MLflow accepts it) but tracebox cannot run it.
    Unsupported {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScorerSpec {
    pub name: String,
    pub session_level: bool,
    /// The model URI as written in the payload (`None` = default model).
    pub model: Option<String>,
    pub kind: Kind,
}

impl ScorerSpec {
    /// Whether this judge calls a model at all.
    pub fn needs_model(&self) -> bool {
        !matches!(self.kind, Kind::Pii { .. } | Kind::Unsupported { .. })
    }
    /// Whether the judge reads the trace's logged expectations (which the
    /// MLflow SDK sends with the trace info, possibly after the spans).
    pub fn needs_expectations(&self) -> bool {
        match &self.kind {
            Kind::Correctness | Kind::ExpectationsGuidelines => true,
            Kind::Instructions(i) | Kind::Session(i) => template_variables(&i.instructions)
                .iter()
                .any(|v| v == "expectations"),
            _ => false,
        }
    }
    /// A short label for listings ("Guidelines", "make_judge", ...).
    pub fn kind_label(&self) -> String {
        match &self.kind {
            Kind::Guidelines { .. } => "Guidelines".into(),
            Kind::ExpectationsGuidelines => "ExpectationsGuidelines".into(),
            Kind::Safety => "Safety".into(),
            Kind::RelevanceToQuery => "RelevanceToQuery".into(),
            Kind::Correctness => "Correctness".into(),
            Kind::RetrievalGroundedness => "RetrievalGroundedness".into(),
            Kind::Pii { .. } => "PIIDetection".into(),
            Kind::Session(_) | Kind::Instructions(_) => "make_judge".into(),
            Kind::Unsupported { .. } => "unsupported".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("serialized_scorer must be valid JSON")]
    NotJson,
    #[error("serialized_scorer must be a JSON object")]
    NotObject,
}

/// True when any object in the tree has a non-null `call_source` (a
/// `@scorer` function, also inside ensembles) — MLflow's detection.
pub fn has_call_source(v: &Value) -> bool {
    match v {
        Value::Object(o) => {
            o.get("call_source").is_some_and(|c| !c.is_null()) || o.values().any(has_call_source)
        }
        Value::Array(a) => a.iter().any(has_call_source),
        _ => false,
    }
}

/// MLflow's `extract_model_from_serialized_scorer`.
pub fn extract_model(v: &Value) -> Option<Value> {
    let pick = |key: &str| {
        v.get(key)
            .and_then(|d| d.get("model"))
            .filter(|m| !m.is_null())
    };
    if let Some(m) = pick("instructions_judge_pydantic_data") {
        return Some(m.clone());
    }
    if let Some(m) = pick("builtin_scorer_pydantic_data") {
        return Some(m.clone());
    }
    if let Some(base) = v
        .get("memory_augmented_judge_data")
        .and_then(|d| d.get("base_judge"))
        .filter(|b| !b.is_null())
        && let Some(m) = extract_model(base)
    {
        return Some(m);
    }
    pick("third_party_scorer_data").cloned()
}

fn guidelines_of(d: &Value) -> Vec<String> {
    match d.get("guidelines") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().map(pyfmt::py_str).collect(),
        _ => vec![],
    }
}

fn render_guidelines(g: &[String]) -> String {
    g.iter()
        .map(|g| format!("<guideline>{g}</guideline>"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn literal(values: &[&str]) -> Value {
    json!({"enum": values, "title": "Result", "type": "string"})
}

fn session_builtin(class: &str, d: &Value) -> Option<Instructions> {
    let inference_params = d
        .get("inference_params")
        .and_then(Value::as_object)
        .cloned();
    let (instructions, value_type, rationale_first) = match class {
        "UserFrustration" => (
            prompts::USER_FRUSTRATION_PROMPT.to_string(),
            literal(&["none", "resolved", "unresolved"]),
            false,
        ),
        "ConversationCompleteness" => (
            prompts::CONVERSATION_COMPLETENESS_PROMPT.to_string(),
            literal(&["yes", "no"]),
            true,
        ),
        "ConversationalSafety" => (
            prompts::CONVERSATIONAL_SAFETY_PROMPT.to_string(),
            literal(&["yes", "no"]),
            true,
        ),
        "ConversationalGuidelines" => (
            prompts::CONVERSATIONAL_GUIDELINES_PROMPT
                .replace("{{ guidelines }}", &render_guidelines(&guidelines_of(d))),
            literal(&["yes", "no"]),
            true,
        ),
        _ => return None,
    };
    Some(Instructions {
        instructions,
        value_type,
        rationale_first,
        inference_params,
    })
}

/// Template variables of a make_judge instructions string, in order of
/// first appearance (MLflow's `{{ name }}` regex).
pub fn template_variables(instructions: &str) -> Vec<String> {
    static VAR: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\s*\}\}")
            .expect("static regex")
    });
    let mut out: Vec<String> = Vec::new();
    for c in VAR.captures_iter(instructions) {
        let v = c[1].to_string();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Parses a payload. Unknown or unrunnable kinds parse to
/// [`Kind::Unsupported`] (MLflow stores them; tracebox reports them).
pub fn parse(serialized: &str) -> Result<ScorerSpec, SpecError> {
    let v: Value = serde_json::from_str(serialized).map_err(|_| SpecError::NotJson)?;
    from_value(&v)
}

pub fn from_value(v: &Value) -> Result<ScorerSpec, SpecError> {
    let o = v.as_object().ok_or(SpecError::NotObject)?;
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let session_flag = o
        .get("is_session_level_scorer")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let model = extract_model(v).map(|m| pyfmt::py_str(&m));
    let unsupported = |reason: String| ScorerSpec {
        name: name.clone(),
        session_level: session_flag,
        model: model.clone(),
        kind: Kind::Unsupported { reason },
    };
    if let Some(class) = o.get("builtin_scorer_class").and_then(Value::as_str) {
        let d = o
            .get("builtin_scorer_pydantic_data")
            .cloned()
            .unwrap_or(Value::Null);
        let kind = match class {
            "Guidelines" => Kind::Guidelines {
                guidelines: guidelines_of(&d),
            },
            "ExpectationsGuidelines" => Kind::ExpectationsGuidelines,
            "Safety" => Kind::Safety,
            "RelevanceToQuery" => Kind::RelevanceToQuery,
            "Correctness" => Kind::Correctness,
            "RetrievalGroundedness" => Kind::RetrievalGroundedness,
            "PIIDetection" => Kind::Pii {
                types: d.get("pii_types").and_then(Value::as_array).map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                }),
            },
            other => match session_builtin(other, &d) {
                Some(i) => {
                    return Ok(ScorerSpec {
                        name,
                        session_level: true,
                        model,
                        kind: Kind::Session(i),
                    });
                }
                None => {
                    return Ok(unsupported(format!(
                        "tracebox does not run the builtin scorer {other}"
                    )));
                }
            },
        };
        return Ok(ScorerSpec {
            name,
            session_level: false,
            model,
            kind,
        });
    }
    if o.get("call_source").is_some_and(|c| !c.is_null()) {
        return Ok(unsupported(
            "custom @scorer functions are Python code; tracebox cannot run them".into(),
        ));
    }
    if let Some(d) = o
        .get("instructions_judge_pydantic_data")
        .and_then(Value::as_object)
    {
        let instructions = d
            .get("instructions")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let vars = template_variables(&instructions);
        let session = session_flag || vars.iter().any(|v| v == "conversation");
        let i = Instructions {
            instructions,
            value_type: d
                .get("feedback_value_type")
                .cloned()
                .filter(|t| !t.is_null())
                .unwrap_or_else(|| json!({"title": "Result", "type": "string"})),
            rationale_first: d
                .get("generate_rationale_first")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            inference_params: d
                .get("inference_params")
                .and_then(Value::as_object)
                .cloned(),
        };
        return Ok(ScorerSpec {
            name,
            session_level: session,
            model,
            kind: if session {
                Kind::Session(i)
            } else {
                Kind::Instructions(i)
            },
        });
    }
    let what = [
        ("memory_augmented_judge_data", "aligned (MemAlign) judges"),
        (
            "third_party_scorer_data",
            "third-party scorers (RAGAS, DeepEval, ...)",
        ),
        ("ensemble_scorer_data", "scorer ensembles"),
    ]
    .iter()
    .find(|(k, _)| o.get(*k).is_some_and(|d| !d.is_null()))
    .map(|(_, w)| *w)
    .unwrap_or("this kind of scorer");
    Ok(unsupported(format!("tracebox does not run {what}")))
}

// ---------------------------------------------------------------- building

/// Judges `tracebox judges add` can create.
#[derive(Debug, Clone, PartialEq)]
pub enum NewJudge {
    Builtin {
        /// MLflow class name (`Guidelines`, `Safety`, `PIIDetection`, ...).
        class: String,
        guidelines: Vec<String>,
    },
    /// make_judge.
    Custom {
        instructions: String,
        /// JSON schema of the result (see [`value_type_schema`]).
        value_type: Value,
    },
}

/// The JSON schema MLflow stores for a feedback value type given as
/// `yes-no`, `bool`, `str`, `int`, `float`, or `a|b|c` (a Literal).
pub fn value_type_schema(t: &str) -> Result<Value, String> {
    Ok(match t {
        "str" | "string" => json!({"title": "Result", "type": "string"}),
        "bool" | "boolean" => json!({"title": "Result", "type": "boolean"}),
        "int" | "integer" => json!({"title": "Result", "type": "integer"}),
        "float" | "number" => json!({"title": "Result", "type": "number"}),
        "yes-no" | "yes|no" => literal(&["yes", "no"]),
        other if other.contains('|') => {
            let vals: Vec<&str> = other.split('|').map(str::trim).collect();
            if vals.iter().any(|v| v.is_empty()) {
                return Err(format!("invalid value type '{t}'"));
            }
            literal(&vals)
        }
        _ => {
            return Err(format!(
                "unknown value type '{t}': use yes-no, bool, str, int, float or a|b|c"
            ));
        }
    })
}

/// The classes `judges add --kind` accepts, with their CLI names.
pub const BUILTIN_KINDS: &[(&str, &str)] = &[
    ("guidelines", "Guidelines"),
    ("expectations-guidelines", "ExpectationsGuidelines"),
    ("safety", "Safety"),
    ("relevance", "RelevanceToQuery"),
    ("groundedness", "RetrievalGroundedness"),
    ("correctness", "Correctness"),
    ("user-frustration", "UserFrustration"),
    ("conversation-completeness", "ConversationCompleteness"),
    ("conversational-safety", "ConversationalSafety"),
    ("conversational-guidelines", "ConversationalGuidelines"),
    ("pii", "PIIDetection"),
];

/// Builds the payload MLflow's client would send for the same judge, as
/// Python's `json.dumps` writes it.
pub fn build(name: &str, judge: &NewJudge, model: Option<&str>) -> Result<String, String> {
    let v = match judge {
        NewJudge::Builtin { class, guidelines } => {
            let template = BUILTIN_PAYLOADS
                .iter()
                .find(|(c, _)| c == class)
                .map(|(_, p)| *p)
                .ok_or_else(|| format!("unknown builtin scorer '{class}'"))?;
            let mut v: Value =
                serde_json::from_str(template).map_err(|e| format!("bad template: {e}"))?;
            let needs_guidelines = class == "Guidelines" || class == "ConversationalGuidelines";
            if needs_guidelines && guidelines.is_empty() {
                return Err(format!("{class} needs at least one --guidelines"));
            }
            v["name"] = json!(name);
            let d = &mut v["builtin_scorer_pydantic_data"];
            d["name"] = json!(name);
            if d.get("model").is_some() {
                d["model"] = model.map_or(Value::Null, |m| json!(m));
            } else if model.is_some() {
                return Err(format!("{class} does not use a model"));
            }
            if needs_guidelines {
                d["guidelines"] = json!(guidelines);
            }
            if class == "ConversationalGuidelines" {
                d["instructions"] = json!(
                    prompts::CONVERSATIONAL_GUIDELINES_PROMPT
                        .replace("{{ guidelines }}", &render_guidelines(guidelines))
                );
            }
            v
        }
        NewJudge::Custom {
            instructions,
            value_type,
        } => {
            let vars = template_variables(instructions);
            let allowed = ["inputs", "outputs", "expectations", "trace", "conversation"];
            if let Some(bad) = vars.iter().find(|v| !allowed.contains(&v.as_str())) {
                return Err(format!(
                    "instructions use {{{{ {bad} }}}}; allowed are {{{{ inputs }}}}, {{{{ outputs }}}}, \
                     {{{{ expectations }}}}, {{{{ trace }}}} and {{{{ conversation }}}}"
                ));
            }
            if vars.is_empty() {
                return Err(
                    "instructions must use at least one of {{ inputs }}, {{ outputs }}, \
                            {{ expectations }}, {{ trace }}, {{ conversation }}"
                        .into(),
                );
            }
            let session = vars.iter().any(|v| v == "conversation");
            if session
                && vars
                    .iter()
                    .any(|v| v != "conversation" && v != "expectations")
            {
                return Err(
                    "{{ conversation }} can only be combined with {{ expectations }}".into(),
                );
            }
            let model = model.unwrap_or(MLFLOW_DEFAULT_MODEL);
            let numeric = matches!(
                value_type.get("type").and_then(Value::as_str),
                Some("boolean" | "integer" | "number")
            ) && value_type.get("enum").is_none();
            let mut data = json!({
                "instructions": instructions,
                "model": model,
                "feedback_value_type": value_type,
            });
            if session {
                data["generate_rationale_first"] = json!(true);
            }
            json!({
                "name": name,
                "aggregations": if numeric { json!(["mean"]) } else { json!([]) },
                "description": null,
                "is_session_level_scorer": session,
                "timeout": 0,
                "mlflow_version": crate::api::mlflow::MLFLOW_COMPAT_VERSION,
                "serialization_version": 1,
                "builtin_scorer_class": null,
                "builtin_scorer_pydantic_data": null,
                "call_source": null,
                "call_signature": null,
                "original_func_name": null,
                "instructions_judge_pydantic_data": data,
                "memory_augmented_judge_data": null,
                "third_party_scorer_data": null,
                "ensemble_scorer_data": null,
            })
        }
    };
    Ok(pyfmt::json_dumps(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = r#"{"name": "politeness", "aggregations": null, "description": "Evaluate whether the agent's response follows specific constraints or instructions provided in the guidelines.", "is_session_level_scorer": false, "timeout": 0, "mlflow_version": "3.17.2", "serialization_version": 1, "builtin_scorer_class": "Guidelines", "builtin_scorer_pydantic_data": {"name": "politeness", "aggregations": null, "description": "Evaluate whether the agent's response follows specific constraints or instructions provided in the guidelines.", "timeout": null, "required_columns": ["inputs", "outputs"], "inference_params": null, "extra_headers": null, "guidelines": ["The response must be polite."], "model": "openai:/gpt-4o-mini", "instructions": "Given the following set of guidelines and some inputs, please assess whether the inputs fully comply with all the provided guidelines. Only focus on the provided guidelines and not the correctness, relevance, or effectiveness of the inputs.\n\n<guidelines>\n{{guidelines}}\n</guidelines>\n{{guidelines_context}}"}, "call_source": null, "call_signature": null, "original_func_name": null, "instructions_judge_pydantic_data": null, "memory_augmented_judge_data": null, "third_party_scorer_data": null, "ensemble_scorer_data": null}"#;

    #[test]
    fn parses_the_captured_guidelines_payload() {
        let s = parse(CAPTURED).unwrap();
        assert_eq!(s.name, "politeness");
        assert_eq!(s.model.as_deref(), Some("openai:/gpt-4o-mini"));
        assert_eq!(
            s.kind,
            Kind::Guidelines {
                guidelines: vec!["The response must be polite.".into()]
            }
        );
        assert!(!s.session_level);
    }

    #[test]
    fn builds_what_the_client_builds() {
        // Same judge as the captured payload, built by tracebox: identical
        // apart from the unordered required_columns set.
        let built = build(
            "politeness",
            &NewJudge::Builtin {
                class: "Guidelines".into(),
                guidelines: vec!["The response must be polite.".into()],
            },
            Some("openai:/gpt-4o-mini"),
        )
        .unwrap();
        let norm = |s: &str| s.replace("[\"outputs\", \"inputs\"]", "[\"inputs\", \"outputs\"]");
        assert_eq!(norm(&built), norm(CAPTURED));
    }

    #[test]
    fn custom_scorers_and_sessions() {
        assert!(has_call_source(
            &json!({"ensemble_scorer_data": {"scorers": [{"call_source": "x"}]}})
        ));
        let p =
            build(
                "frustrated",
                &NewJudge::Custom {
                    instructions:
                        "Analyze the {{ conversation }} and say whether the user got frustrated."
                            .into(),
                    value_type: value_type_schema("bool").unwrap(),
                },
                Some("gateway:/judge-endpoint"),
            )
            .unwrap();
        let s = parse(&p).unwrap();
        assert!(s.session_level);
        assert!(matches!(s.kind, Kind::Session(ref i) if i.rationale_first));
        let uf = build(
            "uf",
            &NewJudge::Builtin {
                class: "UserFrustration".into(),
                guidelines: vec![],
            },
            None,
        )
        .unwrap();
        let s = parse(&uf).unwrap();
        assert!(s.session_level);
        assert_eq!(s.model, None);
    }

    #[test]
    fn template_variables_in_order() {
        assert_eq!(
            template_variables("Does {{ outputs }} answer {{inputs}}? {{ outputs }} {{ bad var }}"),
            vec!["outputs", "inputs"]
        );
    }
}
