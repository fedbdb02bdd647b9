//! Filter-string lexer and recursive-descent parser.
//!
//! Grammar (MLflow's, plus `OR` and parentheses):
//! ```text
//! expr       := and_expr ( OR and_expr )*
//! and_expr   := primary ( AND primary )*
//! primary    := '(' expr ')' | comparison
//! comparison := field op value | field IS [NOT] NULL
//! field      := [entity '.'] key        key may be `back-quoted`
//! ```

use super::QueryError;
use super::ast::{Comparison, Expr, Field, Literal, Op};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
    Is,
    Null,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    text: String,
}

fn err(filter: &str, message: impl Into<String>, pos: usize, token: &str) -> QueryError {
    QueryError::Parse {
        filter: filter.to_string(),
        message: message.into(),
        position: pos,
        token: token.to_string(),
    }
}

fn lex(src: &str) -> Result<Vec<Token>, QueryError> {
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
        let push = |out: &mut Vec<Token>, tok, end: usize| {
            out.push(Token {
                tok,
                pos: start,
                text: chars[start..end].iter().collect(),
            })
        };
        match c {
            '(' => {
                i += 1;
                push(&mut out, Tok::LParen, i);
            }
            ')' => {
                i += 1;
                push(&mut out, Tok::RParen, i);
            }
            ',' => {
                i += 1;
                push(&mut out, Tok::Comma, i);
            }
            '=' => {
                i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
                push(&mut out, Tok::Op(Op::Eq), i);
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                push(&mut out, Tok::Op(Op::Ne), i);
            }
            '<' => {
                let (op, n) = match chars.get(i + 1) {
                    Some('=') => (Op::Le, 2),
                    Some('>') => (Op::Ne, 2),
                    _ => (Op::Lt, 1),
                };
                i += n;
                push(&mut out, Tok::Op(op), i);
            }
            '>' => {
                let (op, n) = if chars.get(i + 1) == Some(&'=') {
                    (Op::Ge, 2)
                } else {
                    (Op::Gt, 1)
                };
                i += n;
                push(&mut out, Tok::Op(op), i);
            }
            '\'' | '"' => {
                let q = c;
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(err(
                                src,
                                "unterminated string literal",
                                start,
                                &chars[start..].iter().collect::<String>(),
                            ));
                        }
                        Some(&ch) if ch == q => {
                            // A doubled quote inside a string stands for one quote.
                            if chars.get(i + 1) == Some(&q) {
                                s.push(q);
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                push(&mut out, Tok::Str(s), i);
            }
            '`' => {
                i += 1;
                let body_start = i;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(err(
                        src,
                        "unterminated back-quoted key",
                        start,
                        &chars[start..].iter().collect::<String>(),
                    ));
                }
                let name: String = chars[body_start..i].iter().collect();
                i += 1;
                // A back-quoted key is part of an identifier (`tags.`a.b``).
                match out.last_mut() {
                    Some(Token {
                        tok: Tok::Ident(prev),
                        text,
                        ..
                    }) if prev.ends_with('.') => {
                        prev.push_str(&name);
                        text.push_str(&chars[start..i].iter().collect::<String>());
                    }
                    _ => push(&mut out, Tok::Ident(name), i),
                }
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || chars[i] == '.'
                        || chars[i] == 'e'
                        || chars[i] == 'E')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                push(&mut out, Tok::Num(text), i);
            }
            c if c.is_alphanumeric() || c == '_' => {
                while i < chars.len()
                    && (chars[i].is_alphanumeric()
                        || chars[i] == '_'
                        || chars[i] == '.'
                        || chars[i] == '-')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let tok = match word.to_ascii_uppercase().as_str() {
                    "AND" => Tok::And,
                    "OR" => Tok::Or,
                    "NOT" => Tok::Not,
                    "IS" => Tok::Is,
                    "NULL" => Tok::Null,
                    "LIKE" => Tok::Op(Op::Like),
                    "ILIKE" => Tok::Op(Op::ILike),
                    "RLIKE" => Tok::Op(Op::RLike),
                    "IN" => Tok::Op(Op::In),
                    _ => Tok::Ident(word),
                };
                push(&mut out, tok, i);
            }
            other => {
                return Err(err(
                    src,
                    format!("unexpected character '{other}'"),
                    start,
                    &other.to_string(),
                ));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn end_pos(&self) -> usize {
        self.src.chars().count()
    }
    fn fail<T>(&self, message: &str) -> Result<T, QueryError> {
        match self.peek() {
            Some(t) => Err(err(self.src, message, t.pos, &t.text)),
            None => Err(err(self.src, message, self.end_pos(), "<end of filter>")),
        }
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        let mut parts = vec![self.and_expr()?];
        while matches!(self.peek(), Some(Token { tok: Tok::Or, .. })) {
            self.next();
            parts.push(self.and_expr()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, QueryError> {
        let mut parts = vec![self.primary()?];
        while matches!(self.peek(), Some(Token { tok: Tok::And, .. })) {
            self.next();
            parts.push(self.primary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        if matches!(
            self.peek(),
            Some(Token {
                tok: Tok::LParen,
                ..
            })
        ) {
            self.next();
            let e = self.expr()?;
            match self.next() {
                Some(Token {
                    tok: Tok::RParen, ..
                }) => Ok(e),
                _ => {
                    self.at -= 1;
                    self.fail("expected ')'")
                }
            }
        } else {
            self.comparison().map(Expr::Cmp)
        }
    }

    fn comparison(&mut self) -> Result<Comparison, QueryError> {
        let Some(Token {
            tok: Tok::Ident(name),
            pos,
            ..
        }) = self.peek().cloned()
        else {
            return self
                .fail("expected a key such as tags.<name>, metadata.<name> or an attribute");
        };
        self.next();
        let field = resolve_field(self.src, &name, pos)?;
        let op = match self.next() {
            Some(Token {
                tok: Tok::Op(op), ..
            }) => op,
            Some(Token { tok: Tok::Not, .. }) => match self.next() {
                Some(Token {
                    tok: Tok::Op(Op::In),
                    ..
                }) => Op::NotIn,
                _ => {
                    self.at -= 1;
                    return self.fail("expected IN after NOT");
                }
            },
            Some(Token { tok: Tok::Is, .. }) => {
                let negated = matches!(self.peek(), Some(Token { tok: Tok::Not, .. }));
                if negated {
                    self.next();
                }
                match self.next() {
                    Some(Token { tok: Tok::Null, .. }) => {}
                    _ => {
                        self.at -= 1;
                        return self.fail("expected NULL after IS");
                    }
                }
                let op = if negated { Op::IsNotNull } else { Op::IsNull };
                return Ok(Comparison {
                    field,
                    op,
                    value: Literal::None,
                    pos,
                });
            }
            _ => {
                self.at -= 1;
                return self.fail("expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, RLIKE, IN, NOT IN, IS NULL, IS NOT NULL)");
            }
        };
        let value = if matches!(op, Op::In | Op::NotIn) {
            self.list()?
        } else {
            self.scalar()?
        };
        Ok(Comparison {
            field,
            op,
            value,
            pos,
        })
    }

    fn scalar(&mut self) -> Result<Literal, QueryError> {
        match self.next() {
            Some(Token {
                tok: Tok::Str(s), ..
            }) => Ok(Literal::Str(s)),
            Some(Token {
                tok: Tok::Num(n),
                pos,
                text,
            }) => parse_number(self.src, &n, pos, &text),
            Some(Token {
                tok: Tok::Ident(v),
                pos,
                text,
            }) => Err(err(
                self.src,
                format!(
                    "Parameter value is either not quoted or unidentified quote types used for string value {v}. Use either single or double quotes."
                ),
                pos,
                &text,
            )),
            _ => {
                self.at -= 1;
                self.fail("expected a value")
            }
        }
    }

    fn list(&mut self) -> Result<Literal, QueryError> {
        match self.next() {
            Some(Token {
                tok: Tok::LParen, ..
            }) => {}
            _ => {
                self.at -= 1;
                return self.fail("expected '(' to start a list");
            }
        }
        let mut items = vec![self.scalar()?];
        loop {
            match self.next() {
                Some(Token {
                    tok: Tok::Comma, ..
                }) => items.push(self.scalar()?),
                Some(Token {
                    tok: Tok::RParen, ..
                }) => break,
                _ => {
                    self.at -= 1;
                    return self.fail("expected ',' or ')' in list");
                }
            }
        }
        Ok(Literal::List(items))
    }
}

fn parse_number(src: &str, n: &str, pos: usize, text: &str) -> Result<Literal, QueryError> {
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Literal::Int(i));
    }
    n.parse::<f64>()
        .map(Literal::Float)
        .map_err(|_| err(src, format!("invalid number '{n}'"), pos, text))
}

/// Canonical attribute names and their aliases.
fn canonical_attribute(key: &str) -> Option<&'static str> {
    Some(match key.to_ascii_lowercase().as_str() {
        "timestamp" | "timestamp_ms" => "timestamp_ms",
        "execution_time" | "execution_time_ms" => "execution_time_ms",
        "end_time" | "end_time_ms" => "end_time_ms",
        "status" => "status",
        "name" => "name",
        "request_id" => "request_id",
        "client_request_id" => "client_request_id",
        "run_id" => "run_id",
        _ => return None,
    })
}

fn resolve_field(src: &str, name: &str, pos: usize) -> Result<Field, QueryError> {
    let (entity, key) = match name.split_once('.') {
        Some((e, k)) => (Some(e), k),
        None => (None, name),
    };
    let bad_key = |what: &str| err(src, what.to_string(), pos, name);
    match entity.map(str::to_ascii_lowercase).as_deref() {
        Some("tags" | "tag") => Ok(Field::Tag(key.to_string())),
        Some("metadata" | "request_metadata") => Ok(Field::Metadata(key.to_string())),
        None | Some("attributes" | "attribute" | "trace") => canonical_attribute(key)
            .map(|k| Field::Attribute(k.to_string()))
            .ok_or_else(|| bad_key(&format!("Invalid attribute key '{key}' specified."))),
        Some(other) => Err(bad_key(&format!("Invalid entity type '{other}'."))),
    }
}

/// Parses a filter string.
pub fn parse_filter(src: &str) -> Result<Expr, QueryError> {
    let toks = lex(src)?;
    let mut p = Parser { src, toks, at: 0 };
    let e = p.expr()?;
    if p.peek().is_some() {
        return p.fail("unexpected token");
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_with_backquotes_and_and() {
        let e =
            parse_filter("tags.`mlflow.trace.user` = 'u1' AND metadata.env != \"dev\"").unwrap();
        let Expr::And(parts) = e else { panic!() };
        assert_eq!(parts.len(), 2);
        let Expr::Cmp(c) = &parts[0] else { panic!() };
        assert_eq!(c.field, Field::Tag("mlflow.trace.user".into()));
        assert_eq!(c.value, Literal::Str("u1".into()));
    }

    #[test]
    fn reports_position_of_bad_token() {
        let e = parse_filter("tags.a = 'x' AND tags.b = unquoted").unwrap_err();
        match e {
            QueryError::Parse { position, .. } => assert_eq!(position, 26),
            other => panic!("{other:?}"),
        }
    }
}
