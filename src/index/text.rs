//! Full-text query syntax, independent of tantivy's own query parser:
//!
//! - the `text` search parameter: words, `"quoted phrases"` and `prefix*`,
//!   all of which must occur somewhere in the trace;
//! - an MLflow `trace.text LIKE '%...%'` pattern, read as words: the text
//!   between wildcards is a phrase, its last word may be a prefix when a
//!   wildcard follows it, and all phrases must occur in the same span.
//!
//! Both are reduced to analysed tokens here, so matching is exactly what
//! the index stores (lower-cased, ASCII-folded, CJK per character).

use super::tokenizer::tokens;

/// One phrase (or word): consecutive tokens; the last one may be a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextClause {
    pub tokens: Vec<String>,
    pub prefix: bool,
}

/// What matches a text search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextQuery {
    /// Every span (a LIKE pattern of only wildcards).
    All,
    /// No span (a LIKE pattern with text but no indexable word).
    Nothing,
    /// Every clause must match.
    Clauses(Vec<TextClause>),
}

fn clause(text: &str, prefix: bool) -> Option<TextClause> {
    let toks: Vec<String> = tokens(text).into_iter().map(|t| t.text).collect();
    if toks.is_empty() {
        return None;
    }
    // A prefix only makes sense if the text really ends inside a word.
    let ends_in_word = text
        .trim_end_matches('*')
        .chars()
        .last()
        .is_some_and(char::is_alphanumeric);
    Some(TextClause {
        tokens: toks,
        prefix: prefix && ends_in_word,
    })
}

impl TextQuery {
    /// Parses the tracebox `text` parameter: words, `"phrases"`, `prefix*`.
    pub fn parse_user(s: &str) -> Result<TextQuery, String> {
        let mut clauses = Vec::new();
        let mut rest = s.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('"') {
                let (phrase, tail) = match after.find('"') {
                    Some(i) => (&after[..i], &after[i + 1..]),
                    None => (after, ""),
                };
                let prefix = phrase.trim_end().ends_with('*');
                if let Some(c) = clause(phrase.trim_end().trim_end_matches('*'), prefix) {
                    clauses.push(c);
                }
                rest = tail.trim_start();
                continue;
            }
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            let word = &rest[..end];
            let prefix = word.ends_with('*');
            if let Some(c) = clause(word.trim_end_matches('*'), prefix) {
                clauses.push(c);
            }
            rest = rest[end..].trim_start();
        }
        if clauses.is_empty() {
            return Err(format!(
                "The search text '{s}' has no searchable words (letters or digits)."
            ));
        }
        Ok(TextQuery::Clauses(clauses))
    }

    /// Reads an MLflow LIKE pattern as a word query (see the module doc).
    /// Case is ignored whichever of LIKE and ILIKE was used.
    pub fn from_like(pattern: &str) -> TextQuery {
        // Literal runs between wildcards, with the byte offset where each ends.
        let mut chunks: Vec<(usize, &str)> = Vec::new();
        let mut start: Option<usize> = None;
        for (i, ch) in pattern.char_indices() {
            if ch == '%' || ch == '_' {
                if let Some(s) = start.take() {
                    chunks.push((i, &pattern[s..i]));
                }
            } else if start.is_none() {
                start = Some(i);
            }
        }
        if let Some(s) = start {
            chunks.push((pattern.len(), &pattern[s..]));
        }
        if chunks.is_empty() {
            return TextQuery::All;
        }
        let clauses: Vec<TextClause> = chunks
            .into_iter()
            .filter_map(|(end, chunk)| clause(chunk, end < pattern.len()))
            .collect();
        if clauses.is_empty() {
            TextQuery::Nothing
        } else {
            TextQuery::Clauses(clauses)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(tokens: &[&str], prefix: bool) -> TextClause {
        TextClause {
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            prefix,
        }
    }

    #[test]
    fn user_syntax() {
        assert_eq!(
            TextQuery::parse_user("Refund \"return POLICY\" ship* 退款").unwrap(),
            TextQuery::Clauses(vec![
                c(&["refund"], false),
                c(&["return", "policy"], false),
                c(&["ship"], true),
                c(&["退", "款"], false),
            ])
        );
        assert_eq!(
            TextQuery::parse_user("\"late deliv*\"").unwrap(),
            TextQuery::Clauses(vec![c(&["late", "deliv"], true)])
        );
        assert!(TextQuery::parse_user(" !!! ").is_err());
    }

    #[test]
    fn like_patterns() {
        assert_eq!(
            TextQuery::from_like("%refund policy%"),
            TextQuery::Clauses(vec![c(&["refund", "policy"], true)])
        );
        assert_eq!(
            TextQuery::from_like("%refund%shipping"),
            TextQuery::Clauses(vec![c(&["refund"], true), c(&["shipping"], false)])
        );
        assert_eq!(TextQuery::from_like("%%"), TextQuery::All);
        assert_eq!(TextQuery::from_like("%!!%"), TextQuery::Nothing);
        assert_eq!(
            TextQuery::from_like("%refund %"),
            TextQuery::Clauses(vec![c(&["refund"], false)])
        );
    }
}
