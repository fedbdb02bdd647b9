//! The parsed form of a filter string.

/// What a comparison's left-hand side refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `tags.<key>` / `tag.<key>`
    Tag(String),
    /// `metadata.<key>` / `request_metadata.<key>`
    Metadata(String),
    /// A trace attribute (`timestamp_ms`, `status`, `name`, ...), canonical name.
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    List(Vec<Literal>),
    /// For `IS NULL` / `IS NOT NULL`.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub field: Field,
    pub op: Op,
    pub value: Literal,
    /// Character offset of the comparison in the filter string.
    pub pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp(Comparison),
}
