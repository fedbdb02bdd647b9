//! What every list page shares about its URL: rebuilding a view's link with
//! some parameters changed, paging forward with keyset tokens while keeping
//! a trail of the pages before (so "Previous" needs no offset and no count),
//! and the keyset tokens of the lists that page over the store's aggregates
//! (sessions, users, a session's turns).
//!
//! Knows URLs and tokens; not what the lists contain.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Previous-page tokens kept in the URL; older pages are reached from the first.
const MAX_TRAIL: usize = 30;
/// The first page in a trail (a real token is never this short).
const FIRST: &str = "0";
/// The URL parameters that say where in a list a view is.
const PAGING: [&str; 2] = ["page_token", "trail"];

/// `base` with a view's parameters (in order), some replaced by `set`; an
/// empty value drops its parameter. Paging parameters are dropped unless
/// set, so changing the view starts from the first page.
pub fn href(base: &str, params: &[(&str, &str)], set: &[(&str, &str)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, current) in params {
        let v = match set.iter().find(|(sk, _)| sk == k) {
            Some((_, v)) => *v,
            None if PAGING.contains(k) => "",
            None => *current,
        };
        if !v.is_empty() {
            ser.append_pair(k, v);
        }
    }
    let qs = ser.finish();
    if qs.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{qs}")
    }
}

/// Links between the pages of a keyset-paged list.
#[derive(Debug, Default)]
pub struct Pager {
    pub next_href: Option<String>,
    pub prev_href: Option<String>,
    /// Offered from the third page on (the previous page is the first before).
    pub first_href: Option<String>,
    /// 0 for the first page.
    pub page_index: usize,
}

impl Pager {
    /// The 1-based position of this page's first row.
    pub fn first_row(&self, page_size: usize) -> usize {
        self.page_index * page_size + 1
    }
}

/// Paging links for the page reached with `page_token` (empty on the first
/// page) after the pages whose tokens `trail` lists ('.'-separated), when
/// the list says `next_token` continues it. `link(token, trail)` builds the
/// view's URL at another page.
pub fn pager(
    trail: &str,
    page_token: &str,
    next_token: Option<&str>,
    link: impl Fn(&str, &str) -> String,
) -> Pager {
    let mut trail: Vec<&str> = trail.split('.').filter(|s| !s.is_empty()).collect();
    let page_index = trail.len();
    let this_page = if page_token.is_empty() {
        FIRST
    } else {
        page_token
    };
    let next_href = next_token.map(|t| {
        let mut next_trail = trail.clone();
        next_trail.push(this_page);
        let skip = next_trail.len().saturating_sub(MAX_TRAIL);
        link(t, &next_trail[skip..].join("."))
    });
    let prev_href = trail.pop().map(|prev| {
        let tok = if prev == FIRST { "" } else { prev };
        link(tok, &trail.join("."))
    });
    let first_href = (page_index > 1).then(|| link("", ""));
    Pager {
        next_href,
        prev_href,
        first_href,
        page_index,
    }
}

/// A keyset position as a URL-safe token (no '.', which separates a trail):
/// base64url of `[kind, time, key]`. The kind keeps one list's token from
/// being taken for another's.
pub fn encode_key(kind: &str, time: i64, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!([kind, time, key]).to_string())
}

/// The position a token of `kind` names; `None` if it is not one.
pub fn decode_key(kind: &str, token: &str) -> Option<(i64, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Array(v) if v.len() == 3 && v[0] == kind => {
            Some((v[1].as_i64()?, v[2].as_str()?.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_replace_drop_and_reset_paging() {
        let params = [
            ("user", "a b"),
            ("range", ""),
            ("page_token", "t1"),
            ("trail", "0"),
        ];
        assert_eq!(href("/x", &params, &[]), "/x?user=a+b");
        assert_eq!(href("/x", &params, &[("user", "")]), "/x");
        assert_eq!(
            href("/x", &params, &[("page_token", "t2"), ("trail", "0.t1")]),
            "/x?user=a+b&page_token=t2&trail=0.t1"
        );
    }

    #[test]
    fn trails_walk_forward_and_back() {
        let link = |t: &str, trail: &str| format!("{t}|{trail}");
        let p1 = pager("", "", Some("A"), link);
        assert_eq!(p1.next_href.as_deref(), Some("A|0"));
        assert!(p1.prev_href.is_none() && p1.first_href.is_none());
        let p2 = pager("0", "A", Some("B"), link);
        assert_eq!(p2.next_href.as_deref(), Some("B|0.A"));
        assert_eq!(p2.prev_href.as_deref(), Some("|"));
        assert!(p2.first_href.is_none());
        let p3 = pager("0.A", "B", None, link);
        assert_eq!(p3.prev_href.as_deref(), Some("A|0"));
        assert_eq!(p3.first_href.as_deref(), Some("|"));
        assert_eq!(p3.first_row(50), 101);
        // The trail is bounded.
        let long: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        let p = pager(&long.join("."), "x", Some("y"), link);
        let next = p.next_href.unwrap();
        assert_eq!(
            next.split('|').nth(1).unwrap().split('.').count(),
            MAX_TRAIL
        );
    }

    #[test]
    fn keys_round_trip_and_keep_their_kind() {
        let t = encode_key("s", 17, "a.b/c");
        assert!(!t.contains('.'));
        assert_eq!(decode_key("s", &t), Some((17, "a.b/c".to_string())));
        assert_eq!(decode_key("u", &t), None);
        assert_eq!(decode_key("s", "garbage!"), None);
    }
}
