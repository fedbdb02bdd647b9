//! Full-text index (tantivy) over span names, inputs, outputs, chat text
//! and exception messages: one document per span, keyed by the span's and
//! its trace's row ids (fast fields).
//!
//! Derived data: SQLite is the truth. Each tantivy commit carries the
//! highest span id it covers (the watermark) in its payload, so after a
//! crash the indexer resumes from SQLite where the last commit stopped; a
//! missing, corrupt or outdated index is rebuilt from SQLite. Searches only
//! produce *candidate* row ids: callers always join them against SQLite,
//! so a stale document can never surface a deleted trace.
//!
//! Concurrency: one writer (behind a mutex, used by the indexer thread or
//! `tracebox reindex`), snapshot readers reloaded after each commit.
//! This module knows tantivy and the store's Rust API; it writes no SQL.

mod extract;
pub mod highlight;
pub mod indexer;
pub mod text;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, Term};

use crate::store::StoreError;
use crate::store::index_feed::{CommittedSpans, SpanText};

pub use extract::{FieldText, span_fields};
pub use indexer::Indexer;
pub use text::{TextClause, TextQuery};

/// The index's directory inside a data directory.
pub const DIR: &str = "index";

/// Bumped when the schema or the analyzer changes: an index written by
/// another version is rebuilt.
const INDEX_VERSION: u32 = 1;
/// Writer memory budget (tantivy's minimum is 15 MB per thread).
const WRITER_HEAP: usize = 64 * 1024 * 1024;
/// Most terms a prefix expands to.
const PREFIX_EXPANSIONS: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the full-text index in {0} is locked by another process (is tracebox already running on this data directory?)"
    )]
    Locked(PathBuf),
    #[error("the index writer is not available in this process")]
    NoWriter,
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

#[derive(Clone, Copy)]
struct Fields {
    span: Field,
    trace: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let span = b.add_u64_field("span", FAST);
    let trace = b.add_u64_field("trace", FAST | INDEXED);
    let text = b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer::ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    (b.build(), Fields { span, trace, text })
}

/// What the commit payload records.
#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    version: u32,
    /// Highest `spans.id` included.
    watermark: i64,
}

/// Which row ids a search collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Trace,
    Span,
}

/// A set of row ids (trace or span), as a bitmap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HitSet {
    bits: Vec<u8>,
    len: usize,
}

impl HitSet {
    pub fn insert(&mut self, id: u64) {
        let byte = (id / 8) as usize;
        if byte >= self.bits.len() {
            self.bits.resize(byte + 1, 0);
        }
        let mask = 1u8 << (id % 8);
        if self.bits[byte] & mask == 0 {
            self.bits[byte] |= mask;
            self.len += 1;
        }
    }
    pub fn contains(&self, id: i64) -> bool {
        id >= 0
            && self
                .bits
                .get((id / 8) as usize)
                .is_some_and(|b| b & (1 << (id % 8)) != 0)
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The bitmap, bit `n` of byte `n / 8` (LSB first): what the SQL
    /// function `tb_bit` reads.
    pub fn bitmap(&self) -> &[u8] {
        &self.bits
    }
    /// The ids in increasing order.
    pub fn ids(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.len);
        for (i, b) in self.bits.iter().enumerate() {
            if *b == 0 {
                continue;
            }
            for k in 0..8 {
                if b & (1 << k) != 0 {
                    out.push((i * 8 + k) as i64);
                }
            }
        }
        out
    }
    /// Keeps only ids also in `other`.
    pub fn intersect(&mut self, other: &HitSet) {
        self.bits.truncate(other.bits.len());
        let mut len = 0;
        for (a, b) in self.bits.iter_mut().zip(other.bits.iter()) {
            *a &= *b;
            len += a.count_ones() as usize;
        }
        self.len = len;
    }
}

/// Collects one u64 fast field of every matching document.
struct IdCollector {
    field: &'static str,
}

struct IdSegmentCollector {
    column: Arc<dyn tantivy::columnar::ColumnValues<u64>>,
    out: Vec<u64>,
    buf: Vec<u64>,
}

impl Collector for IdCollector {
    type Fruit = HitSet;
    type Child = IdSegmentCollector;

    fn for_segment(&self, _: u32, reader: &SegmentReader) -> tantivy::Result<IdSegmentCollector> {
        let column = reader
            .fast_fields()
            .u64(self.field)?
            .first_or_default_col(0);
        Ok(IdSegmentCollector {
            column,
            out: Vec::new(),
            buf: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<HitSet> {
        let mut set = HitSet::default();
        for v in fruits {
            for id in v {
                set.insert(id);
            }
        }
        Ok(set)
    }
}

impl SegmentCollector for IdSegmentCollector {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        self.out.push(self.column.get_val(doc));
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        self.buf.resize(docs.len(), 0);
        self.column.get_vals(docs, &mut self.buf);
        // Spans of one trace are usually adjacent: skip repeats cheaply.
        let mut last = None;
        for v in &self.buf {
            if last != Some(*v) {
                self.out.push(*v);
                last = Some(*v);
            }
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.out
    }
}

struct Inner {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    /// The single writer; `None` until [`SearchIndex::open_writer`].
    writer: Mutex<Option<IndexWriter>>,
    /// Highest span id in the last commit.
    watermark: AtomicI64,
}

/// Handle to the index; cheap to clone.
#[derive(Clone)]
pub struct SearchIndex {
    inner: Arc<Inner>,
}

/// How [`SearchIndex::open`] found the index directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// An index with its watermark.
    Existing,
    /// No index yet: created empty (everything will be indexed).
    Created,
    /// Unreadable or written by another version: wiped and created empty.
    Rebuilt,
}

fn read_payload(index: &Index) -> Option<Payload> {
    let metas = index.load_metas().ok()?;
    match metas.payload {
        Some(p) => serde_json::from_str::<Payload>(&p).ok(),
        // A fresh index that never committed has no payload.
        None if metas.segments.is_empty() => Some(Payload {
            version: INDEX_VERSION,
            watermark: 0,
        }),
        None => None,
    }
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it if missing and recreating it
    /// (empty) if it cannot be read or belongs to another version.
    pub fn open(dir: &Path) -> Result<(SearchIndex, Opened)> {
        let (schema, fields) = schema();
        let exists = dir.join("meta.json").exists();
        let attempt = || -> Result<(Index, i64)> {
            let index = Index::open_in_dir(dir)?;
            if index.schema() != schema {
                return Err(IndexError::Tantivy(tantivy::TantivyError::SchemaError(
                    "schema differs".into(),
                )));
            }
            let p = read_payload(&index).ok_or_else(|| {
                IndexError::Tantivy(tantivy::TantivyError::SchemaError("bad payload".into()))
            })?;
            if p.version != INDEX_VERSION {
                return Err(IndexError::Tantivy(tantivy::TantivyError::SchemaError(
                    format!("index version {} != {INDEX_VERSION}", p.version),
                )));
            }
            Ok((index, p.watermark))
        };
        let (index, watermark, opened) = match exists.then(attempt) {
            Some(Ok((index, w))) => (index, w, Opened::Existing),
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!(dir = %dir.display(), error = %e,
                        "full-text index unreadable; rebuilding it from the database");
                }
                if dir.exists() {
                    std::fs::remove_dir_all(dir)?;
                }
                std::fs::create_dir_all(dir)?;
                let index = Index::create_in_dir(dir, schema)?;
                (
                    index,
                    0,
                    if exists {
                        Opened::Rebuilt
                    } else {
                        Opened::Created
                    },
                )
            }
        };
        index
            .tokenizers()
            .register(tokenizer::ANALYZER, tokenizer::analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let si = SearchIndex {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                index,
                reader,
                fields,
                writer: Mutex::new(None),
                watermark: AtomicI64::new(watermark),
            }),
        };
        Ok((si, opened))
    }

    /// Takes the index's write lock for this process (one writer per index).
    pub fn open_writer(&self) -> Result<()> {
        let mut w = self.inner.writer.lock();
        if w.is_none() {
            let writer = self
                .inner
                .index
                .writer_with_num_threads(1, WRITER_HEAP)
                .map_err(|e| match e {
                    tantivy::TantivyError::LockFailure(..) => {
                        IndexError::Locked(self.inner.dir.clone())
                    }
                    other => IndexError::Tantivy(other),
                })?;
            *w = Some(writer);
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Highest span id the last commit covers.
    pub fn watermark(&self) -> i64 {
        self.inner.watermark.load(Ordering::Acquire)
    }

    /// Documents visible to searches.
    pub fn num_docs(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
    }

    /// Adds one document per span (not visible until [`SearchIndex::commit`]).
    pub fn add_spans(&self, spans: &[SpanText]) -> Result<()> {
        let guard = self.inner.writer.lock();
        let w = guard.as_ref().ok_or(IndexError::NoWriter)?;
        for s in spans {
            w.add_document(self.span_doc(s.id, s.trace, &span_fields(s)))?;
        }
        Ok(())
    }

    /// Adds one document per span the store handed on as it committed them,
    /// skipping ids up to `after` (already indexed); not visible until
    /// [`SearchIndex::commit`]. The same documents [`SearchIndex::add_spans`]
    /// makes of those spans read back. Returns how many it added.
    pub fn add_committed(&self, spans: &CommittedSpans, after: i64) -> Result<usize> {
        self.add_fields(spans.iter().filter(|s| s.0 > after))
    }

    /// Adds one document per `(spans.id, traces.id, searchable fields)`
    /// (not visible until [`SearchIndex::commit`]). Returns how many.
    pub fn add_fields<'a>(
        &self,
        spans: impl IntoIterator<Item = (i64, i64, &'a [FieldText])>,
    ) -> Result<usize> {
        let guard = self.inner.writer.lock();
        let w = guard.as_ref().ok_or(IndexError::NoWriter)?;
        let mut added = 0;
        for (id, trace, fields) in spans {
            w.add_document(self.span_doc(id, trace, fields))?;
            added += 1;
        }
        Ok(added)
    }

    fn span_doc(&self, id: i64, trace: i64, fields: &[FieldText]) -> tantivy::TantivyDocument {
        let f = self.inner.fields;
        let mut doc = tantivy::TantivyDocument::default();
        doc.add_u64(f.span, id as u64);
        doc.add_u64(f.trace, trace as u64);
        for ft in fields {
            doc.add_text(f.text, &ft.text);
        }
        doc
    }

    /// Removes every document of these traces (at the next commit).
    pub fn delete_traces(&self, traces: &[i64]) -> Result<()> {
        let guard = self.inner.writer.lock();
        let w = guard.as_ref().ok_or(IndexError::NoWriter)?;
        for t in traces {
            w.delete_term(Term::from_field_u64(self.inner.fields.trace, *t as u64));
        }
        Ok(())
    }

    /// Removes every document (for a full rebuild); takes effect at commit.
    pub fn delete_all(&self) -> Result<()> {
        let mut guard = self.inner.writer.lock();
        let w = guard.as_mut().ok_or(IndexError::NoWriter)?;
        w.delete_all_documents()?;
        Ok(())
    }

    /// Commits with `watermark` in the payload and makes it searchable.
    pub fn commit(&self, watermark: i64) -> Result<()> {
        {
            let mut guard = self.inner.writer.lock();
            let w = guard.as_mut().ok_or(IndexError::NoWriter)?;
            let mut prepared = w.prepare_commit()?;
            let payload = serde_json::to_string(&Payload {
                version: INDEX_VERSION,
                watermark,
            })
            .unwrap_or_default();
            prepared.set_payload(&payload);
            prepared.commit()?;
        }
        // Readers first: whoever sees the new watermark (the status
        // endpoint) can rely on searches seeing the documents too.
        self.inner.reader.reload()?;
        self.inner.watermark.store(watermark, Ordering::Release);
        Ok(())
    }

    /// Waits for background merges (so a rebuilt index is compact).
    pub fn wait_merging(&self) -> Result<()> {
        let mut guard = self.inner.writer.lock();
        if let Some(w) = guard.take() {
            w.wait_merging_threads()?;
        }
        drop(guard);
        self.open_writer()
    }

    fn clause_query(&self, c: &TextClause) -> Box<dyn Query> {
        let field = self.inner.fields.text;
        let terms: Vec<Term> = c
            .tokens
            .iter()
            .map(|t| Term::from_field_text(field, t))
            .collect();
        match (terms.len(), c.prefix) {
            (0, _) => Box::new(EmptyQuery),
            (1, false) => Box::new(TermQuery::new(terms[0].clone(), IndexRecordOption::Basic)),
            (_, true) => {
                let mut q = PhrasePrefixQuery::new(terms);
                q.set_max_expansions(PREFIX_EXPANSIONS);
                Box::new(q)
            }
            (_, false) => Box::new(PhraseQuery::new(terms)),
        }
    }

    fn scoped(&self, q: Box<dyn Query>, trace: Option<i64>) -> Box<dyn Query> {
        match trace {
            None => q,
            Some(t) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, q),
                (
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_u64(self.inner.fields.trace, t as u64),
                        IndexRecordOption::Basic,
                    )),
                ),
            ])),
        }
    }

    fn collect(&self, q: &dyn Query, key: Key) -> Result<HitSet> {
        let searcher = self.inner.reader.searcher();
        let field = match key {
            Key::Trace => "trace",
            Key::Span => "span",
        };
        Ok(searcher.search(q, &IdCollector { field })?)
    }

    /// Row ids (of `key`) of spans matching every clause of `q` in the same
    /// span, optionally only within one trace.
    pub fn same_span_hits(&self, q: &TextQuery, key: Key, trace: Option<i64>) -> Result<HitSet> {
        let query: Box<dyn Query> = match q {
            TextQuery::All => Box::new(AllQuery),
            TextQuery::Nothing => return Ok(HitSet::default()),
            TextQuery::Clauses(cs) if cs.len() == 1 => self.clause_query(&cs[0]),
            TextQuery::Clauses(cs) => Box::new(BooleanQuery::new(
                cs.iter()
                    .map(|c| (Occur::Must, self.clause_query(c)))
                    .collect(),
            )),
        };
        self.collect(self.scoped(query, trace).as_ref(), key)
    }

    /// Trace row ids where every clause of `q` matches some span of the
    /// trace (not necessarily the same one): the `text` parameter.
    pub fn trace_hits(&self, q: &TextQuery, trace: Option<i64>) -> Result<HitSet> {
        let cs = match q {
            TextQuery::Clauses(cs) => cs,
            other => return self.same_span_hits(other, Key::Trace, trace),
        };
        let mut acc: Option<HitSet> = None;
        // Rarest first would be ideal; clause order is good enough and the
        // intersection short-circuits on an empty set.
        for c in cs {
            let hits = self.collect(
                self.scoped(self.clause_query(c), trace).as_ref(),
                Key::Trace,
            )?;
            match &mut acc {
                None => acc = Some(hits),
                Some(a) => a.intersect(&hits),
            }
            if acc.as_ref().is_some_and(HitSet::is_empty) {
                break;
            }
        }
        Ok(acc.unwrap_or_default())
    }

    /// Bytes the index takes on disk.
    pub fn size_bytes(&self) -> u64 {
        crate::app::dir_size(&self.inner.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: i64, trace: i64, name: &str, input: &str) -> SpanText {
        SpanText {
            id,
            trace,
            span_id: format!("{id:016x}"),
            name: name.into(),
            inputs: Some(serde_json::json!({"q": input}).to_string()),
            outputs: None,
            events: None,
            status_message: None,
        }
    }

    #[test]
    fn index_search_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let (idx, opened) = SearchIndex::open(&path).unwrap();
        assert_eq!(opened, Opened::Created);
        idx.open_writer().unwrap();
        idx.add_spans(&[
            span(1, 10, "chat", "Where is my REFUND? 退款政策"),
            span(2, 10, "tool", "lookup order"),
            span(3, 11, "chat", "refund policy for shoes"),
            span(4, 12, "chat", "Привет мир"),
        ])
        .unwrap();
        idx.commit(4).unwrap();
        let q = |s: &str| TextQuery::parse_user(s).unwrap();
        assert_eq!(
            idx.trace_hits(&q("refund"), None).unwrap().ids(),
            vec![10, 11]
        );
        assert_eq!(
            idx.trace_hits(&q("\"refund policy\""), None).unwrap().ids(),
            vec![11]
        );
        assert_eq!(
            idx.trace_hits(&q("refu*"), None).unwrap().ids(),
            vec![10, 11]
        );
        assert_eq!(idx.trace_hits(&q("退款"), None).unwrap().ids(), vec![10]);
        assert_eq!(idx.trace_hits(&q("мир"), None).unwrap().ids(), vec![12]);
        // Trace level: words in different spans; span level: the same span.
        assert_eq!(
            idx.trace_hits(&q("refund lookup"), None).unwrap().ids(),
            vec![10]
        );
        let like = TextQuery::from_like("%refund%lookup%");
        assert!(
            idx.same_span_hits(&like, Key::Trace, None)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            idx.same_span_hits(&TextQuery::from_like("%order%"), Key::Span, None)
                .unwrap()
                .ids(),
            vec![2]
        );
        assert_eq!(
            idx.trace_hits(&q("refund"), Some(11)).unwrap().ids(),
            vec![11]
        );
        idx.delete_traces(&[10]).unwrap();
        idx.commit(4).unwrap();
        assert_eq!(idx.trace_hits(&q("refund"), None).unwrap().ids(), vec![11]);
        drop(idx);
        let (idx, opened) = SearchIndex::open(&path).unwrap();
        assert_eq!(
            (opened, idx.watermark(), idx.num_docs()),
            (Opened::Existing, 4, 2)
        );
        drop(idx);
        std::fs::write(path.join("meta.json"), b"garbage").unwrap();
        let (idx, opened) = SearchIndex::open(&path).unwrap();
        assert_eq!(
            (opened, idx.watermark(), idx.num_docs()),
            (Opened::Rebuilt, 0, 0)
        );
    }

    #[test]
    fn hitset_bits() {
        let mut a = HitSet::default();
        for i in [1, 9, 64, 9] {
            a.insert(i);
        }
        assert_eq!((a.len(), a.ids()), (3, vec![1, 9, 64]));
        let mut b = HitSet::default();
        b.insert(9);
        b.insert(100);
        a.intersect(&b);
        assert_eq!(a.ids(), vec![9]);
        assert!(a.contains(9) && !a.contains(1) && !a.contains(-1));
    }
}
