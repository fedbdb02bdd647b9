//! Filter-string parser: tokens to an [`Expr`] of raw comparisons.
//!
//! Grammar (MLflow's, plus `OR` and parentheses, which MLflow rejects):
//! ```text
//! filter     := expr
//! expr       := and_expr ( OR and_expr )*
//! and_expr   := AND* primary ( AND* primary )* AND*   -- AND is optional, as in MLflow
//! primary    := '(' expr ')' | comparison
//! comparison := ident comparator value | ident IS [NOT] NULL
//! value      := 'str' | "str" | number | '(' 'str' (',' 'str')* ','? ')'
//! ```
//! `AND` binds tighter than `OR`. Every error names the offending token and
//! its character position.

use super::QueryError;
use super::ast::{Comparison, Expr, Literal, Op};
use super::lex::{Tok, Token, filter_error, lex};

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    at: usize,
}

fn python_repr(s: &str) -> String {
    // Python's repr of a str: single quotes unless it contains ' and no ".
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', "\\'"))
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.at)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn bump(&mut self) -> Option<Token> {
        let t = self.toks.get(self.at).cloned();
        if t.is_some() {
            self.at += 1;
        }
        t
    }

    fn end(&self) -> usize {
        self.src.chars().count()
    }

    /// An error at the current token (or at the end of the filter).
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, QueryError> {
        match self.peek() {
            Some(t) => Err(filter_error(message, t.pos, &t.text)),
            None => Err(filter_error(message, self.end(), "<end of filter>")),
        }
    }

    fn skip_ands(&mut self) {
        while matches!(self.peek_tok(), Some(Tok::Kw("AND"))) {
            self.at += 1;
        }
    }

    fn starts_primary(&self) -> bool {
        matches!(
            self.peek_tok(),
            Some(Tok::Ident(_) | Tok::Backtick(_) | Tok::LParen)
        )
    }

    fn expr(&mut self) -> Result<Option<Expr>, QueryError> {
        let mut parts = Vec::new();
        let first = self.and_expr()?;
        let mut saw_or = false;
        if let Some(e) = first {
            parts.push(e);
        }
        while matches!(self.peek_tok(), Some(Tok::Kw("OR"))) {
            if parts.is_empty() {
                return self.fail("Invalid filter: expected a comparison before 'OR'");
            }
            saw_or = true;
            self.bump();
            match self.and_expr()? {
                Some(e) => parts.push(e),
                None => return self.fail("Invalid filter: expected a comparison after 'OR'"),
            }
        }
        let _ = saw_or;
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Expr::Or(parts)),
        })
    }

    fn and_expr(&mut self) -> Result<Option<Expr>, QueryError> {
        let mut parts = Vec::new();
        loop {
            self.skip_ands();
            if !self.starts_primary() {
                break;
            }
            parts.push(self.primary()?);
        }
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Expr::And(parts)),
        })
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        if matches!(self.peek_tok(), Some(Tok::LParen)) {
            let open = self.bump();
            let inner = self.expr()?;
            match self.peek_tok() {
                Some(Tok::RParen) => {
                    self.bump();
                }
                _ => {
                    return match &open {
                        Some(o) if self.peek().is_none() => Err(filter_error(
                            "Invalid filter: unbalanced parenthesis, '(' is never closed",
                            o.pos,
                            "(",
                        )),
                        _ => self.unexpected(),
                    };
                }
            }
            return match inner {
                Some(e) => Ok(e),
                None => Err(filter_error(
                    "Invalid filter: empty parentheses",
                    open.map(|o| o.pos).unwrap_or(0),
                    "()",
                )),
            };
        }
        self.comparison().map(Expr::Cmp)
    }

    /// The error for a token that cannot stand where it is.
    fn unexpected<T>(&self) -> Result<T, QueryError> {
        match self.peek() {
            Some(t) if t.tok == Tok::Semi => {
                let rest_is_blank = self.toks[self.at + 1..].is_empty();
                if rest_is_blank {
                    Err(filter_error(
                        "Invalid clause(s) in filter string: ';'",
                        t.pos,
                        ";",
                    ))
                } else {
                    Err(filter_error(
                        format!(
                            "Search filter contained multiple expression {}. Provide AND-ed expression list.",
                            python_repr(self.src)
                        ),
                        t.pos,
                        ";",
                    ))
                }
            }
            Some(t) if t.tok == Tok::RParen => Err(filter_error(
                "Invalid filter: unbalanced parenthesis, ')' without '('",
                t.pos,
                ")",
            )),
            Some(t) => Err(filter_error(
                format!("Invalid clause(s) in filter string: '{}'", t.text),
                t.pos,
                &t.text,
            )),
            None => self.fail("Invalid filter: unexpected end of filter"),
        }
    }

    fn comparison(&mut self) -> Result<Comparison, QueryError> {
        let Some(id) = self.bump() else {
            return self.fail("Invalid filter: expected a comparison");
        };
        let ident = match &id.tok {
            Tok::Ident(s) => s.clone(),
            Tok::Backtick(s) => format!("`{s}`"),
            _ => {
                self.at -= 1;
                return self.unexpected();
            }
        };
        // The comparator, possibly several keywords.
        let Some(first) = self.bump() else {
            return self.fail(format!(
                "Invalid comparison clause: expected a comparator after '{ident}'"
            ));
        };
        let op_pos = first.pos;
        let (op, op_text) = match &first.tok {
            Tok::Cmp(s) => (
                match s.as_str() {
                    "=" => Op::Eq,
                    "!=" => Op::Ne,
                    "<" => Op::Lt,
                    "<=" => Op::Le,
                    ">" => Op::Gt,
                    ">=" => Op::Ge,
                    other => Op::Other(other.to_string()),
                },
                s.clone(),
            ),
            Tok::Kw("LIKE") => (Op::Like, first.text.clone()),
            Tok::Kw("ILIKE") => (Op::ILike, first.text.clone()),
            Tok::Kw("RLIKE") => (Op::RLike, first.text.clone()),
            Tok::Kw("IN") => (Op::In, first.text.clone()),
            Tok::Kw("REGEXP") => (Op::Other("REGEXP".into()), first.text.clone()),
            Tok::Kw("NOT") => match self.bump() {
                Some(Token {
                    tok: Tok::Kw(k @ ("LIKE" | "ILIKE" | "RLIKE" | "IN" | "REGEXP")),
                    text,
                    ..
                }) => {
                    let op = if k == "IN" {
                        Op::NotIn
                    } else {
                        Op::Other(format!("NOT {k}"))
                    };
                    (op, format!("{} {text}", first.text))
                }
                _ => {
                    self.at -= 1;
                    return self.fail(
                        "Invalid comparison clause: expected LIKE, ILIKE, RLIKE or IN after 'NOT'",
                    );
                }
            },
            Tok::Kw("IS") => {
                let negated = matches!(self.peek_tok(), Some(Tok::Kw("NOT")));
                if negated {
                    self.bump();
                }
                match self.bump() {
                    Some(Token {
                        tok: Tok::Kw("NULL"),
                        ..
                    }) => {}
                    _ => {
                        self.at -= 1;
                        return self.fail(format!(
                            "Invalid comparison clause: expected NULL after 'IS{}'",
                            if negated { " NOT" } else { "" }
                        ));
                    }
                }
                let op = if negated { Op::IsNotNull } else { Op::IsNull };
                let op_text = op.as_str().to_string();
                return self.check_bare(Comparison {
                    ident,
                    op,
                    op_text,
                    value: Literal::None,
                    value_text: String::new(),
                    pos: id.pos,
                    value_pos: op_pos,
                });
            }
            _ => {
                self.at -= 1;
                return self.fail(format!(
                    "Invalid comparison clause: expected a comparator (=, !=, <, <=, >, >=, LIKE, \
                     ILIKE, RLIKE, IN, NOT IN, IS NULL, IS NOT NULL) after '{ident}'"
                ));
            }
        };
        let value_pos = self.peek().map(|t| t.pos).unwrap_or_else(|| self.end());
        let (value, value_text) = self.value(&ident, &op_text)?;
        self.check_bare(Comparison {
            ident,
            op,
            op_text,
            value,
            value_text,
            pos: id.pos,
            value_pos,
        })
    }

    /// sqlparse quirks MLflow inherits for unprefixed `timestamp` and `text`
    /// (both are SQL builtins to it): `text` never works bare, `timestamp`
    /// only with an integer. Reported as errors, not reinterpreted.
    fn check_bare(&self, c: Comparison) -> Result<Comparison, QueryError> {
        if c.ident == "text" {
            return Err(filter_error(
                format!(
                    "Invalid clause(s) in filter string: 'text', '{}', '{}'. Use a prefix: trace.text",
                    c.op_text, c.value_text
                ),
                c.pos,
                "text",
            ));
        }
        if c.ident == "timestamp" {
            let ok_op = matches!(c.op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge);
            if !ok_op || !matches!(c.value, Literal::Int(_)) {
                return Err(filter_error(
                    format!(
                        "Invalid clause(s) in filter string: 'timestamp', '{}', '{}'. Bare \
                         'timestamp' takes a comparator and an integer; use trace.timestamp_ms \
                         for anything else",
                        c.op_text, c.value_text
                    ),
                    c.value_pos,
                    &c.value_text,
                ));
            }
        }
        Ok(c)
    }

    fn value(&mut self, ident: &str, op: &str) -> Result<(Literal, String), QueryError> {
        let Some(t) = self.bump() else {
            return self.fail(format!(
                "Invalid comparison clause: expected a value after '{ident} {op}'"
            ));
        };
        Ok(match &t.tok {
            Tok::SqStr(s) | Tok::DqStr(s) => (Literal::Str(s.clone()), t.text),
            Tok::Int(i) => (Literal::Int(*i), t.text),
            Tok::Float(f) => (Literal::Float(*f), t.text),
            Tok::LParen => {
                self.at -= 1;
                self.list()?
            }
            Tok::Ident(v) | Tok::Backtick(v) => {
                return Err(filter_error(
                    format!(
                        "Parameter value is either not quoted or unidentified quote types used for \
                         string value {v}. Use either single or double quotes."
                    ),
                    t.pos,
                    &t.text,
                ));
            }
            Tok::Kw(_) => {
                return Err(filter_error(
                    format!(
                        "Invalid clause(s) in filter string: '{ident}', '{op}', '{}'. Values must be \
                         quoted strings or numbers",
                        t.text
                    ),
                    t.pos,
                    &t.text,
                ));
            }
            _ => {
                return Err(filter_error(
                    format!(
                        "Invalid comparison clause: expected a value after '{ident} {op}', found '{}'",
                        t.text
                    ),
                    t.pos,
                    &t.text,
                ));
            }
        })
    }

    /// `( 'a', 'b' )` with Python literal rules, as MLflow's
    /// `ast.literal_eval` reads it.
    fn list(&mut self) -> Result<(Literal, String), QueryError> {
        let open = self.bump().map(|t| t.pos).unwrap_or(0);
        let mut items: Vec<String> = Vec::new();
        let mut current: Option<String> = None;
        let mut bad_types: Vec<String> = Vec::new();
        // Whether the element before a comma was a number (Python accepts
        // it; the type check below rejects the list as MLflow does).
        let mut number_item = false;
        let close;
        loop {
            let Some(t) = self.bump() else {
                return Err(filter_error(
                    "While parsing a list in the query, expected a non-empty list of string \
                     values, but got ill-formed list.",
                    open,
                    "(",
                ));
            };
            match &t.tok {
                Tok::SqStr(s) => {
                    let v = python_string(s, '\'');
                    current = Some(current.unwrap_or_default() + &v);
                }
                Tok::DqStr(s) => {
                    let v = python_string(s, '"');
                    current = Some(current.unwrap_or_default() + &v);
                }
                Tok::Comma => match current.take() {
                    Some(v) => items.push(v),
                    None if std::mem::take(&mut number_item) => {}
                    None => {
                        return Err(filter_error(
                            "While parsing a list in the query, expected a non-empty list of \
                             string values, but got ill-formed list.",
                            t.pos,
                            ",",
                        ));
                    }
                },
                Tok::RParen => {
                    if let Some(v) = current.take() {
                        items.push(v);
                    }
                    close = t.pos;
                    break;
                }
                Tok::Int(_) | Tok::Float(_) => {
                    if let Some(v) = current.take() {
                        items.push(v);
                    }
                    bad_types.push(t.text.clone());
                    number_item = true;
                    if !matches!(self.peek_tok(), Some(Tok::Comma | Tok::RParen)) {
                        return Err(filter_error(
                            "While parsing a list in the query, expected a non-empty list of \
                             string values, but got ill-formed list.",
                            t.pos,
                            &t.text,
                        ));
                    }
                }
                _ => {
                    return Err(filter_error(
                        format!(
                            "While parsing a list in the query, expected a non-empty list of \
                             string values, but got ill-formed list: '{}' is not a quoted string",
                            t.text
                        ),
                        t.pos,
                        &t.text,
                    ));
                }
            }
        }
        let text: String = self.src.chars().skip(open).take(close + 1 - open).collect();
        if !bad_types.is_empty() {
            return Err(filter_error(
                format!(
                    "While parsing a list in the query, expected string value, punctuation, or \
                     whitespace, but got different type in list: {text}"
                ),
                open,
                &text,
            ));
        }
        if items.is_empty() {
            return Err(filter_error(
                "While parsing a list in the query, expected a non-empty list of string values, \
                 but got empty list",
                open,
                &text,
            ));
        }
        Ok((Literal::List(items), text))
    }
}

/// A quoted string as Python's `literal_eval` reads it: a doubled quote is
/// two adjacent literals (so it vanishes), backslash escapes are processed.
fn python_string(raw: &str, quote: char) -> String {
    let doubled: String = [quote, quote].iter().collect();
    let s = raw.replace(&doubled, "");
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(c @ ('\\' | '\'' | '"')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Parses a filter string. `Ok(None)` means "no filter": the string is
/// empty or holds only `AND`s (MLflow accepts those). A string of only
/// whitespace is an error, as in MLflow.
pub fn parse_filter(src: &str) -> Result<Option<Expr>, QueryError> {
    if src.is_empty() {
        return Ok(None);
    }
    if src.trim().is_empty() {
        return Err(filter_error(
            format!("Invalid filter '{src}'. Could not be parsed."),
            0,
            src,
        ));
    }
    let toks = lex(src)?;
    let mut p = Parser { src, toks, at: 0 };
    let e = p.expr()?;
    if p.peek().is_some() {
        return p.unexpected();
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Comparison {
        match parse_filter(src).unwrap().unwrap() {
            Expr::Cmp(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn err(src: &str) -> (String, usize, String) {
        match parse_filter(src).unwrap_err() {
            QueryError::Filter {
                message,
                position,
                token,
            } => (message, position, token),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comparisons_keep_what_was_written() {
        let c = one("tags.`mlflow.trace.user` like 'u%'");
        assert_eq!(c.ident, "tags.`mlflow.trace.user`");
        assert_eq!((c.op.clone(), c.op_text.as_str()), (Op::Like, "like"));
        assert_eq!(c.value, Literal::Str("u%".into()));
        assert_eq!(c.value_text, "'u%'");
        let c = one("trace.status NOT IN ('OK' , \"ERR\" 'OR',)");
        assert_eq!(c.op, Op::NotIn);
        assert_eq!(c.value, Literal::List(vec!["OK".into(), "ERROR".into()]));
        let c = one("metadata.x IS NOT NULL");
        assert_eq!((c.op, c.value), (Op::IsNotNull, Literal::None));
        let c = one("tags.a = 'it''s'");
        assert_eq!(c.value, Literal::Str("it''s".into()));
        let c = one("tags.a IN ('it\\'s')");
        assert_eq!(c.value, Literal::List(vec!["it's".into()]));
        let c = one("x <> 'a'");
        assert_eq!(c.op, Op::Other("<>".into()));
        let c = one("x NOT LIKE 'a'");
        assert_eq!(c.op, Op::Other("NOT LIKE".into()));
        let c = one("timestamp > 17");
        assert_eq!(c.value, Literal::Int(17));
    }

    #[test]
    fn and_is_optional_or_and_parens_group() {
        let e = parse_filter("AND tags.a = 'x' tags.b = 'y' AND AND").unwrap();
        assert!(matches!(e, Some(Expr::And(ref v)) if v.len() == 2));
        assert_eq!(parse_filter("AND").unwrap(), None);
        assert_eq!(parse_filter("").unwrap(), None);
        let e = parse_filter("a = 'x' AND (b = 'y' OR c = 'z') OR d = 'w'").unwrap();
        let Some(Expr::Or(parts)) = e else { panic!() };
        assert_eq!(parts.len(), 2);
        assert!(matches!(&parts[0], Expr::And(v) if matches!(v[1], Expr::Or(_))));
    }

    #[test]
    fn errors_name_token_and_position() {
        let (m, p, t) = err("tags.a = 'x' AND tags.b = unquoted");
        assert_eq!((p, t.as_str()), (26, "unquoted"));
        assert!(m.starts_with("Parameter value is either not quoted"), "{m}");
        let (m, p, _) = err("   ");
        assert_eq!(
            (m.as_str(), p),
            ("Invalid filter '   '. Could not be parsed.", 0)
        );
        let (m, p, _) = err("status = 'OK'; tags.a = 'b'");
        assert_eq!(
            m,
            "Search filter contained multiple expression \"status = 'OK'; tags.a = 'b'\". Provide AND-ed expression list."
        );
        assert_eq!(p, 13);
        let (m, _, _) = err("status = 'OK';");
        assert_eq!(m, "Invalid clause(s) in filter string: ';'");
        let (m, p, _) = err("(status = 'OK'");
        assert!(m.contains("never closed"), "{m}");
        assert_eq!(p, 0);
        let (_, p, t) = err("status = 'OK')");
        assert_eq!((p, t.as_str()), (13, ")"));
        let (m, _, _) = err("status IN ()");
        assert!(m.ends_with("but got empty list"), "{m}");
        let (m, _, _) = err("status IN (1, 2)");
        assert!(m.ends_with("different type in list: (1, 2)"), "{m}");
        let (m, _, _) = err("status IN (OK, ERROR)");
        assert!(m.contains("ill-formed list"), "{m}");
        let (m, p, _) = err("feedback.x = true");
        assert!(m.starts_with("Invalid clause(s) in filter string: 'feedback.x', '=', 'true'"));
        assert_eq!(p, 13);
        let (m, p, _) = err("timestamp > 1.5");
        assert!(m.starts_with("Invalid clause(s) in filter string: 'timestamp', '>', '1.5'"));
        assert_eq!(p, 12);
        let (m, _, _) = err("text LIKE '%hello%'");
        assert!(m.starts_with("Invalid clause(s) in filter string: 'text', 'LIKE', ''%hello%''"));
        let (_, p, t) = err("tags.a = 'x' OR");
        assert_eq!((p, t.as_str()), (15, "<end of filter>"));
        let (_, p, t) = err("tags.a 'x'");
        assert_eq!((p, t.as_str()), (7, "'x'"));
        let (_, p, t) = err("tags.a = ");
        assert_eq!((p, t.as_str()), (9, "<end of filter>"));
        let (_, p, t) = err("tags.a = 'x' 5");
        assert_eq!((p, t.as_str()), (13, "5"));
        let (_, p, _) = err("tags.a IS 'x'");
        assert_eq!(p, 10);
        let (_, p, _) = err("()");
        assert_eq!(p, 0);
    }
}
