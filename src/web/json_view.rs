//! JSON values as a flat list of open/leaf/close nodes that a template
//! turns into nested, collapsible `<details>` elements. Keeping the
//! recursion here and the markup in the template means every key and value
//! still goes through the template's HTML escaping.
//!
//! Big values are bounded: long strings are cut, and past a node budget the
//! rest is summarised (the raw JSON link has everything).

use serde_json::Value;

/// Nodes rendered per value; beyond this the remainder is elided.
const MAX_NODES: usize = 3000;
/// Characters shown of one string.
const MAX_STRING: usize = 20_000;
/// Objects and arrays nested deeper than this start collapsed.
const OPEN_DEPTH: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Open,
    Leaf,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonNode {
    pub kind: Kind,
    /// Object key or array index.
    pub key: Option<String>,
    /// Scalar text, or the summary of an object/array (`{5}` / `[3]`).
    pub text: String,
    /// CSS class of the value: `js` string, `jn` number, `jb` bool, `jz` null,
    /// `jo` object/array summary, `jx` elision note.
    pub class: &'static str,
    /// Open by default.
    pub open: bool,
}

impl JsonNode {
    pub fn is_open(&self) -> bool {
        self.kind == Kind::Open
    }
    pub fn is_close(&self) -> bool {
        self.kind == Kind::Close
    }
}

struct Walk {
    out: Vec<JsonNode>,
    budget_hit: bool,
}

impl Walk {
    fn leaf(&mut self, key: Option<String>, text: String, class: &'static str) {
        self.out.push(JsonNode {
            kind: Kind::Leaf,
            key,
            text,
            class,
            open: false,
        });
    }

    fn value(&mut self, key: Option<String>, v: &Value, depth: usize) {
        if self.out.len() >= MAX_NODES {
            if !self.budget_hit {
                self.budget_hit = true;
                self.leaf(None, "… more not shown (open the raw JSON)".into(), "jx");
            }
            return;
        }
        match v {
            Value::Null => self.leaf(key, "null".into(), "jz"),
            Value::Bool(b) => self.leaf(key, b.to_string(), "jb"),
            Value::Number(n) => self.leaf(key, n.to_string(), "jn"),
            Value::String(s) => {
                let chars = s.chars().count();
                let text = if chars > MAX_STRING {
                    let cut: String = s.chars().take(MAX_STRING).collect();
                    format!("{cut}… ({} more characters)", chars - MAX_STRING)
                } else {
                    s.clone()
                };
                self.leaf(key, text, "js")
            }
            Value::Array(items) => {
                if items.is_empty() {
                    return self.leaf(key, "[]".into(), "jo");
                }
                self.open(key, format!("[{}]", items.len()), depth);
                for (i, item) in items.iter().enumerate() {
                    self.value(Some(i.to_string()), item, depth + 1);
                }
                self.close();
            }
            Value::Object(map) => {
                if map.is_empty() {
                    return self.leaf(key, "{}".into(), "jo");
                }
                let n = map.len();
                self.open(
                    key,
                    format!("{{{n} {}}}", if n == 1 { "key" } else { "keys" }),
                    depth,
                );
                for (k, item) in map {
                    self.value(Some(k.clone()), item, depth + 1);
                }
                self.close();
            }
        }
    }

    fn open(&mut self, key: Option<String>, summary: String, depth: usize) {
        self.out.push(JsonNode {
            kind: Kind::Open,
            key,
            text: summary,
            class: "jo",
            open: depth < OPEN_DEPTH,
        });
    }

    fn close(&mut self) {
        self.out.push(JsonNode {
            kind: Kind::Close,
            key: None,
            text: String::new(),
            class: "",
            open: false,
        });
    }
}

/// The nodes of a value; opens and closes always balance.
pub fn nodes(v: &Value) -> Vec<JsonNode> {
    let mut w = Walk {
        out: Vec::new(),
        budget_hit: false,
    };
    w.value(None, v, 0);
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn balanced_and_bounded() {
        let v = json!({"a": [1, "x", null, {"b": true}], "c": {}});
        let n = nodes(&v);
        let opens = n.iter().filter(|x| x.is_open()).count();
        let closes = n.iter().filter(|x| x.is_close()).count();
        assert_eq!(opens, closes);
        assert_eq!(n[0].text, "{2 keys}");
        assert!(n[0].open);
        let big = Value::Array((0..10_000).map(Value::from).collect());
        let n = nodes(&big);
        assert!(n.len() <= MAX_NODES + 3);
        assert_eq!(
            n.iter().filter(|x| x.is_open()).count(),
            n.iter().filter(|x| x.is_close()).count()
        );
        assert!(n.iter().any(|x| x.class == "jx"));
    }
}
