//! The parsed form of a filter string, before any meaning is attached.
//!
//! A [`Comparison`] keeps the identifier, comparator and value as written
//! (with positions), because MLflow validates values against the entity
//! type *before* remapping keys and reports comparators as the user typed
//! them. `resolve` turns these into typed predicates.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    RLike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
    /// Parsed but unsupported everywhere (`<>`, `==`, `NOT LIKE`,
    /// `REGEXP`, ...); the resolver rejects it with the set of comparators
    /// the key allows, as MLflow does. Holds the upper-cased text.
    Other(String),
}

impl Op {
    /// MLflow's spelling (upper case), used in error messages.
    pub fn as_str(&self) -> &str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "LIKE",
            Op::ILike => "ILIKE",
            Op::RLike => "RLIKE",
            Op::In => "IN",
            Op::NotIn => "NOT IN",
            Op::IsNull => "IS NULL",
            Op::IsNotNull => "IS NOT NULL",
            Op::Other(s) => s,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A quoted string, outer quotes removed, nothing unescaped.
    Str(String),
    Int(i64),
    Float(f64),
    /// A parenthesised list of strings (Python literal rules: escapes
    /// processed, adjacent strings concatenated).
    List(Vec<String>),
    /// For `IS NULL` / `IS NOT NULL`.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The identifier as written, e.g. ``tags.`model name` ``.
    pub ident: String,
    pub op: Op,
    /// The comparator as written (`like`, `NOT IN`).
    pub op_text: String,
    pub value: Literal,
    /// The value as written (`'x'` with its quotes, `5`, `('a', 'b')`).
    pub value_text: String,
    /// Character offset of the identifier in the filter string.
    pub pos: usize,
    /// Character offset of the value (of the comparator for IS NULL).
    pub value_pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp(Comparison),
}

impl Expr {
    /// Every comparison, depth first.
    pub fn comparisons(&self) -> Vec<&Comparison> {
        let mut out = Vec::new();
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a Comparison>) {
            match e {
                Expr::And(p) | Expr::Or(p) => p.iter().for_each(|x| walk(x, out)),
                Expr::Cmp(c) => out.push(c),
            }
        }
        walk(self, &mut out);
        out
    }
}
