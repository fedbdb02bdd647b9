//! Filter-string lexer: MLflow's token rules (sqlparse's, as MLflow's
//! `search_utils` sees them), with character positions for error messages.
//!
//! Owns only token shapes; what a token means is the parser's and the
//! resolver's business. Positions are 0-based character (not byte) offsets.

use super::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// `word(.segment)*`, where a segment after a dot may be back-quoted,
    /// single- or double-quoted; the raw text is kept (MLflow strips quotes
    /// per part later).
    Ident(String),
    /// `'...'`: the text between the outer quotes, not unescaped (MLflow
    /// keeps `''` and `\'` as written in scalar values).
    SqStr(String),
    /// `"..."`: a double-quoted symbol, accepted as a string value.
    DqStr(String),
    /// A back-quoted name on its own (`` `status` ``).
    Backtick(String),
    Int(i64),
    Float(f64),
    /// A run of `<>=~!` characters (`=`, `!=`, `<>`, `==`, ...).
    Cmp(String),
    /// A keyword, upper-cased: AND OR NOT IS NULL IN LIKE ILIKE RLIKE
    /// REGEXP TRUE FALSE.
    Kw(&'static str),
    LParen,
    RParen,
    Comma,
    Semi,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub tok: Tok,
    /// Character offset of the token's first character.
    pub pos: usize,
    /// The token exactly as written.
    pub text: String,
}

const KEYWORDS: &[&str] = &[
    "AND", "OR", "NOT", "IS", "NULL", "IN", "LIKE", "ILIKE", "RLIKE", "REGEXP", "TRUE", "FALSE",
];

pub(super) fn filter_error(message: impl Into<String>, position: usize, token: &str) -> QueryError {
    QueryError::Filter {
        message: message.into(),
        position,
        token: token.to_string(),
    }
}

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Scans a quoted run starting at `i` (on the opening quote) with MLflow's
/// regex `q(qq|\\q|[^q])*q`; returns the index after the closing quote.
fn scan_quoted(chars: &[char], i: usize, q: char) -> Option<usize> {
    let mut j = i + 1;
    while j < chars.len() {
        let c = chars[j];
        if c == q {
            if chars.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return Some(j + 1);
        }
        if c == '\\' && chars.get(j + 1) == Some(&q) {
            j += 2;
            continue;
        }
        j += 1;
    }
    None
}

/// Back-quoted names escape a back quote by doubling it.
fn scan_backtick(chars: &[char], i: usize) -> Option<usize> {
    scan_quoted(chars, i, '`')
}

fn text(chars: &[char], from: usize, to: usize) -> String {
    chars[from..to].iter().collect()
}

/// Scans a number at `i`: `-?\d+`, `-?\d+\.\d*`, `-?\.\d+`, with an
/// optional exponent. Returns (end, is_float) or None if not a number.
fn scan_number(chars: &[char], i: usize) -> Option<(usize, bool)> {
    let mut j = i;
    if chars.get(j) == Some(&'-') {
        j += 1;
    }
    let int_start = j;
    while chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
        j += 1;
    }
    let mut float = false;
    let had_int = j > int_start;
    if chars.get(j) == Some(&'.') {
        let k = j + 1;
        let mut m = k;
        while chars.get(m).is_some_and(|c| c.is_ascii_digit()) {
            m += 1;
        }
        if had_int || m > k {
            float = true;
            j = m;
        }
    }
    if !had_int && !float {
        return None;
    }
    if matches!(chars.get(j), Some('e' | 'E')) {
        let mut k = j + 1;
        if chars.get(k) == Some(&'-') || chars.get(k) == Some(&'+') {
            k += 1;
        }
        let d = k;
        while chars.get(k).is_some_and(|c| c.is_ascii_digit()) {
            k += 1;
        }
        if k > d {
            float = true;
            j = k;
        }
    }
    Some((j, float))
}

pub(super) fn lex(src: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let (tok, end) = match c {
            '(' => (Tok::LParen, i + 1),
            ')' => (Tok::RParen, i + 1),
            ',' => (Tok::Comma, i + 1),
            ';' => (Tok::Semi, i + 1),
            '<' | '>' | '=' | '~' | '!' => {
                let mut j = i;
                while j < chars.len() && matches!(chars[j], '<' | '>' | '=' | '~' | '!') {
                    j += 1;
                }
                (Tok::Cmp(text(&chars, i, j)), j)
            }
            '\'' | '"' => {
                let end = scan_quoted(&chars, i, c).ok_or_else(|| {
                    filter_error(
                        "Invalid filter: unterminated string literal",
                        start,
                        &text(&chars, start, chars.len()),
                    )
                })?;
                let inner = text(&chars, i + 1, end - 1);
                let tok = if c == '\'' {
                    Tok::SqStr(inner)
                } else {
                    Tok::DqStr(inner)
                };
                // `"tags".x` and `'a'.b` are not keys MLflow accepts; a quote
                // directly followed by a dot is reported by the parser.
                (tok, end)
            }
            '`' => {
                let end = scan_backtick(&chars, i).ok_or_else(|| {
                    filter_error(
                        "Invalid filter: unterminated back-quoted name",
                        start,
                        &text(&chars, start, chars.len()),
                    )
                })?;
                if chars.get(end) == Some(&'.') {
                    // `` `tags`.x ``: an identifier whose entity is quoted.
                    let end = scan_ident_tail(&chars, end)?;
                    (Tok::Ident(text(&chars, start, end)), end)
                } else {
                    (Tok::Backtick(text(&chars, i + 1, end - 1)), end)
                }
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => match scan_number(&chars, i) {
                Some((end, float)) => {
                    let t = text(&chars, i, end);
                    if chars.get(end).is_some_and(|c| is_word_char(*c)) {
                        // `123abc`, `tags.123` style junk.
                        let mut e = end;
                        while e < chars.len() && is_word_char(chars[e]) {
                            e += 1;
                        }
                        return Err(filter_error(
                            format!("Invalid filter: unexpected token '{}'", text(&chars, i, e)),
                            start,
                            &text(&chars, i, e),
                        ));
                    }
                    let tok = if float {
                        Tok::Float(t.parse().map_err(|_| {
                            filter_error(format!("Invalid number '{t}'"), start, &t)
                        })?)
                    } else {
                        match t.parse::<i64>() {
                            Ok(n) => Tok::Int(n),
                            // Beyond i64: compare as a float, as SQLite would.
                            Err(_) => Tok::Float(t.parse().map_err(|_| {
                                filter_error(format!("Invalid number '{t}'"), start, &t)
                            })?),
                        }
                    };
                    (tok, end)
                }
                None => {
                    return Err(filter_error(
                        format!("Invalid filter: unexpected character '{c}'"),
                        start,
                        &c.to_string(),
                    ));
                }
            },
            c if is_word_start(c) => {
                let mut j = i;
                while j < chars.len() && is_word_char(chars[j]) {
                    j += 1;
                }
                if chars.get(j) == Some(&'.') {
                    let end = scan_ident_tail(&chars, j)?;
                    (Tok::Ident(text(&chars, start, end)), end)
                } else {
                    let word = text(&chars, start, j);
                    let upper = word.to_uppercase();
                    match KEYWORDS.iter().find(|k| **k == upper) {
                        Some(k) => (Tok::Kw(k), j),
                        None => (Tok::Ident(word), j),
                    }
                }
            }
            other => {
                return Err(filter_error(
                    format!("Invalid filter: unexpected character '{other}'"),
                    start,
                    &other.to_string(),
                ));
            }
        };
        out.push(Token {
            tok,
            pos: start,
            text: text(&chars, start, end),
        });
        i = end;
    }
    Ok(out)
}

/// Continues an identifier at a `.`: each dot must be followed by a word or
/// a quoted segment. Returns the end of the identifier.
fn scan_ident_tail(chars: &[char], mut j: usize) -> Result<usize, QueryError> {
    while chars.get(j) == Some(&'.') {
        let seg = j + 1;
        match chars.get(seg) {
            Some(c) if is_word_start(*c) => {
                let mut k = seg;
                while k < chars.len() && is_word_char(chars[k]) {
                    k += 1;
                }
                j = k;
            }
            Some(q @ ('`' | '"' | '\'')) => {
                let end = scan_quoted(chars, seg, *q).ok_or_else(|| {
                    filter_error(
                        "Invalid filter: unterminated quoted key",
                        seg,
                        &text(chars, seg, chars.len()),
                    )
                })?;
                j = end;
            }
            None => return Ok(seg),
            Some(c) if c.is_whitespace() || matches!(c, '<' | '>' | '=' | '~' | '!') => {
                // `feedback. = 'x'`: an empty key, which the resolver
                // reports in MLflow's words.
                return Ok(seg);
            }
            _ => {
                // `tags.123` and other keys that are not words.
                let mut k = seg;
                while k < chars.len() && !chars[k].is_whitespace() {
                    k += 1;
                }
                let bad = text(chars, 0, k);
                let bad = bad
                    .rsplit(|c: char| c.is_whitespace())
                    .next()
                    .unwrap_or_default()
                    .to_string();
                return Err(filter_error(
                    format!(
                        "Invalid comparison clause. Expected 'Identifier' found '{bad}': a key \
                         after '.' must start with a letter or '_', or be quoted with back quotes"
                    ),
                    j,
                    &bad,
                ));
            }
        }
    }
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn identifiers_values_and_comparators() {
        assert_eq!(
            toks("tags.`a b` != 'x''y' AND trace.x>=-1.5e3"),
            vec![
                Tok::Ident("tags.`a b`".into()),
                Tok::Cmp("!=".into()),
                Tok::SqStr("x''y".into()),
                Tok::Kw("AND"),
                Tok::Ident("trace.x".into()),
                Tok::Cmp(">=".into()),
                Tok::Float(-1500.0),
            ]
        );
        assert_eq!(
            toks("status in ('a',\"b\")"),
            vec![
                Tok::Ident("status".into()),
                Tok::Kw("IN"),
                Tok::LParen,
                Tok::SqStr("a".into()),
                Tok::Comma,
                Tok::DqStr("b".into()),
                Tok::RParen,
            ]
        );
        assert_eq!(toks("`status`"), vec![Tok::Backtick("status".into())]);
        assert_eq!(toks("tags.null"), vec![Tok::Ident("tags.null".into())]);
        assert_eq!(toks("x <> 1"), {
            vec![Tok::Ident("x".into()), Tok::Cmp("<>".into()), Tok::Int(1)]
        });
    }

    #[test]
    fn positions_are_characters() {
        let t = lex("tags.é = 'ü' AND x").unwrap();
        assert_eq!(t[2].pos, 9);
        assert_eq!(t[3].pos, 13);
        assert_eq!(t[4].pos, 17);
    }

    #[test]
    fn errors_name_the_place() {
        match lex("tags.a = 'open").unwrap_err() {
            QueryError::Filter { position, .. } => assert_eq!(position, 9),
            e => panic!("{e:?}"),
        }
        match lex("tags.123 = 'x'").unwrap_err() {
            QueryError::Filter { position, .. } => assert_eq!(position, 4),
            e => panic!("{e:?}"),
        }
        match lex("a = 'x' # b").unwrap_err() {
            QueryError::Filter {
                position, token, ..
            } => assert_eq!((position, token.as_str()), (8, "#")),
            e => panic!("{e:?}"),
        }
    }
}
