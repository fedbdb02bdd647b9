//! Highlighted snippets: where a text query matches inside a piece of text
//! re-read from SQLite, using the same analyzer as the index (so prefixes,
//! phrases, folding and CJK characters highlight exactly as they match).

use super::text::{TextClause, TextQuery};
use super::tokenizer::tokens;

/// A fragment of a span field with the matched parts marked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snippet {
    /// The span id (16 hex digits).
    pub span_id: String,
    /// `name`, `inputs`, `outputs` or `exception`.
    pub field: String,
    /// Up to about [`FRAGMENT_CHARS`] characters around the first match;
    /// `…` marks a cut.
    pub fragment: String,
    /// Byte ranges of `fragment` to highlight.
    pub highlights: Vec<(usize, usize)>,
}

/// Characters in a fragment (about two lines of a results list).
pub const FRAGMENT_CHARS: usize = 160;

fn clause_matches(toks: &[tantivy::tokenizer::Token], c: &TextClause) -> Vec<(usize, usize)> {
    let n = c.tokens.len();
    let mut out = Vec::new();
    if n == 0 || toks.len() < n {
        return out;
    }
    'outer: for i in 0..=toks.len() - n {
        for (k, want) in c.tokens.iter().enumerate() {
            let t = &toks[i + k];
            if t.position != toks[i].position + k {
                continue 'outer;
            }
            let last = k == n - 1;
            let ok = if last && c.prefix {
                t.text.starts_with(want.as_str())
            } else {
                t.text == *want
            };
            if !ok {
                continue 'outer;
            }
        }
        out.push((toks[i].offset_from, toks[i + n - 1].offset_to));
    }
    out
}

/// Byte ranges of `text` that `q` matches, sorted and merged.
pub fn match_ranges(text: &str, q: &TextQuery) -> Vec<(usize, usize)> {
    let TextQuery::Clauses(cs) = q else {
        return Vec::new();
    };
    let toks = tokens(text);
    let mut ranges: Vec<(usize, usize)> =
        cs.iter().flat_map(|c| clause_matches(&toks, c)).collect();
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
            _ => merged.push(r),
        }
    }
    merged
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A fragment of `text` around its first match of `q`, or `None` when `q`
/// does not match it.
pub fn fragment(text: &str, q: &TextQuery) -> Option<(String, Vec<(usize, usize)>)> {
    let ranges = match_ranges(text, q);
    let first = *ranges.first()?;
    // Start about a third of the window before the match, at a word break.
    let budget = FRAGMENT_CHARS * 4; // bytes, generous for non-ASCII
    let lead = text[..first.0]
        .char_indices()
        .rev()
        .nth(FRAGMENT_CHARS / 3)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let start = if lead == 0 {
        0
    } else {
        text[lead..first.0]
            .find(char::is_whitespace)
            .map(|w| lead + w + 1)
            .unwrap_or(lead)
    };
    let mut end = text[start..]
        .char_indices()
        .nth(FRAGMENT_CHARS)
        .map(|(i, _)| start + i)
        .unwrap_or(text.len());
    end = floor_boundary(text, end.min(start + budget)).max(first.1.min(text.len()));
    let mut frag = String::new();
    if start > 0 {
        frag.push('…');
    }
    let base = frag.len();
    frag.push_str(&text[start..end]);
    if end < text.len() {
        frag.push('…');
    }
    let highlights = ranges
        .into_iter()
        .filter(|(a, b)| *a >= start && *b <= end)
        .map(|(a, b)| (a - start + base, b - start + base))
        .collect();
    Some((frag, highlights))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_words_phrases_prefixes_and_cjk() {
        let q = TextQuery::parse_user("refund \"return policy\" ship*").unwrap();
        let text = "Our Return Policy: a REFUND is shipped within 5 days.";
        let (frag, hl) = fragment(text, &q).unwrap();
        let marked: Vec<&str> = hl.iter().map(|(a, b)| &frag[*a..*b]).collect();
        assert_eq!(marked, vec!["Return Policy", "REFUND", "shipped"]);
        let q = TextQuery::parse_user("退款").unwrap();
        let (frag, hl) = fragment("我要退款，谢谢", &q).unwrap();
        assert_eq!(&frag[hl[0].0..hl[0].1], "退款");
        assert!(fragment("nothing here", &q).is_none());
        let long = format!("{} refund {}", "word ".repeat(100), "tail ".repeat(100));
        let q = TextQuery::parse_user("refund").unwrap();
        let (frag, hl) = fragment(&long, &q).unwrap();
        assert!(frag.starts_with('…') && frag.ends_with('…'));
        assert_eq!(&frag[hl[0].0..hl[0].1], "refund");
        assert!(frag.chars().count() <= FRAGMENT_CHARS + 2);
    }
}
