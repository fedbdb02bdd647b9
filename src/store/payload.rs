//! Compressed span payloads: the inputs, outputs and events of a span are
//! most of a trace's bytes (chat messages, retrieved documents), and most of
//! what is written to the WAL and kept on disk.
//!
//! A payload of at least [`MIN_PACKED`] bytes is stored as a zstd frame in a
//! BLOB, in the same column that holds short payloads (and every payload
//! written before migration 0010) as TEXT. One span's JSON is small, and zstd
//! alone saves little on a few hundred bytes; what makes it pay is a
//! *dictionary* trained on earlier payloads, which knows the system prompts,
//! the message scaffolding and the vocabulary that repeat from trace to
//! trace. The first [`SAMPLE_BYTES`] of payloads are sampled and a
//! dictionary is trained from them; later ones are trained from fresh
//! samples after ever longer stretches of data, so the store follows what an
//! application sends without keeping many dictionaries. Dictionaries are
//! rows of `payload_dicts` and are never deleted: a blob names the one it was
//! made with.
//!
//! Blob layout: one tag byte, then
//! - [`TAG_PLAIN`]: a zstd frame made without a dictionary;
//! - [`TAG_DICT`]: the dictionary's id (u32, little endian), then the frame.
//!
//! The trace previews a root span sets (`traces.request_preview` and
//! `response_preview`) are packed the same way: uncompressed they were a
//! third of the database under OTLP load.
//!
//! Reads go through the SQL function `tb_text(x)` (registered on every
//! connection, see `functions`): TEXT comes back as is, a blob decompressed.
//! Every query that reads or filters on these columns wraps them in it, so
//! the rest of the store, the tantivy feed and the query planner see JSON
//! text as before.
//!
//! Ordering invariant: a dictionary is committed and known to the decoder
//! before the encoder uses it, so no reader can meet a blob whose dictionary
//! it does not know.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use rusqlite::Connection;
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use zstd::zstd_safe::{CCtx, CParameter, DCtx};

use super::{Result, Store, StoreError};

/// Payloads shorter than this stay TEXT: a frame's header and the tag would
/// eat most of what compression saves.
pub const MIN_PACKED: usize = 64;

/// zstd level: with a dictionary, higher levels gain little on payloads of a
/// few KB and cost ingestion CPU.
const LEVEL: i32 = 3;

/// Sample size a dictionary is trained from (about 30 times the dictionary).
const SAMPLE_BYTES: usize = 1 << 20;
/// Longest part of one payload that goes into the sample, so that a few
/// huge payloads do not crowd out the common ones.
const SAMPLE_MAX_EACH: usize = 8 << 10;
/// Dictionary size.
const DICT_BYTES: usize = 32 << 10;
/// Payload bytes after the first dictionary before the next is trained; the
/// stretch doubles each time, up to [`RETRAIN_MAX`].
const RETRAIN_FIRST: u64 = 64 << 20;
const RETRAIN_MAX: u64 = 1 << 30;

/// Largest payload a blob may decompress to (a corrupt header must not make
/// us allocate without bound; the API's limits keep real ones far smaller).
const MAX_UNPACKED: u64 = 256 << 20;

pub const TAG_PLAIN: u8 = 1;
pub const TAG_DICT: u8 = 2;

/// A span payload ready to be bound to a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(String),
    Packed(Vec<u8>),
}

impl ToSql for Payload {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Payload::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Payload::Packed(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Compresses and decompresses payloads; shared by every connection of a
/// store (the SQL function holds a reference) and by the request threads
/// that prepare uploads.
#[derive(Default)]
pub struct Codec {
    /// Every dictionary of this database, for decoding.
    dicts: RwLock<HashMap<u32, Arc<[u8]>>>,
    /// The dictionary new payloads are compressed with.
    current: RwLock<Option<u32>>,
    /// Idle compression contexts, each with the dictionary it has loaded
    /// (loading one digests it: done once per context, not per payload).
    encoders: Mutex<Vec<(Option<u32>, CCtx<'static>)>>,
    decoders: Mutex<Vec<(Option<u32>, DCtx<'static>)>>,
    sampler: Mutex<Sampler>,
    /// A dictionary is being trained.
    training: AtomicBool,
}

/// Contexts kept for reuse; more are made under load and dropped after.
const MAX_IDLE_CONTEXTS: usize = 8;

/// An idle context that has `dict` loaded, the most recently returned first.
fn take<C>(idle: &mut Vec<(Option<u32>, C)>, dict: Option<u32>) -> Option<C> {
    let i = idle.iter().rposition(|(d, _)| *d == dict)?;
    Some(idle.remove(i).1)
}

/// Returns a context to its pool; when the pool is full the oldest goes, so
/// that reads alternating between dictionaries keep contexts for the ones
/// in use instead of loading a dictionary on every call.
fn keep<C>(idle: &mut Vec<(Option<u32>, C)>, dict: Option<u32>, ctx: C) {
    if idle.len() >= MAX_IDLE_CONTEXTS {
        idle.remove(0);
    }
    idle.push((dict, ctx));
}

struct Sampler {
    /// Payload bytes encoded since the last dictionary (or since start-up).
    seen: u64,
    /// Sampling starts when `seen` reaches this.
    start_at: u64,
    /// The next stretch after a dictionary is trained.
    stretch: u64,
    data: Vec<u8>,
    sizes: Vec<usize>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            seen: 0,
            start_at: 0,
            stretch: RETRAIN_FIRST,
            data: Vec::new(),
            sizes: Vec::new(),
        }
    }
}

impl Codec {
    /// A codec for the dictionaries stored in `conn`'s database.
    pub fn load(conn: &Connection) -> Result<Codec> {
        let codec = Codec::default();
        let mut stmt = conn.prepare("SELECT id, dict FROM payload_dicts ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut last = None;
        for row in rows {
            let (id, dict) = row?;
            codec.dicts.write().insert(id, dict.into());
            last = Some(id);
        }
        *codec.current.write() = last;
        // With a dictionary already there, the next one waits for a stretch
        // of new data; without, the first payloads are sampled.
        if last.is_some() {
            codec.sampler.lock().start_at = RETRAIN_FIRST;
        }
        Ok(codec)
    }

    /// Encodes a payload for storage: short ones as text, others compressed
    /// when that is smaller.
    pub fn pack(&self, text: String) -> Payload {
        if text.len() < MIN_PACKED {
            return Payload::Text(text);
        }
        self.sample(text.as_bytes());
        let dict = *self.current.read();
        match self.compress(dict, text.as_bytes()) {
            Some(b) if b.len() < text.len() => Payload::Packed(b),
            _ => Payload::Text(text),
        }
    }

    fn compress(&self, dict: Option<u32>, src: &[u8]) -> Option<Vec<u8>> {
        let mut ctx = self.encoder(dict)?;
        let head = match dict {
            None => vec![TAG_PLAIN],
            Some(id) => {
                let mut h = vec![TAG_DICT];
                h.extend_from_slice(&id.to_le_bytes());
                h
            }
        };
        // Room for the tag in front: the frame is written from the start of
        // the buffer and moved up by a few bytes, within its capacity.
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(src.len()) + head.len());
        let res = ctx.compress2(&mut out, src);
        self.put_encoder(dict, ctx);
        res.ok()?;
        out.splice(0..0, head);
        Some(out)
    }

    fn encoder(&self, dict: Option<u32>) -> Option<CCtx<'static>> {
        let pooled = take(&mut self.encoders.lock(), dict);
        if pooled.is_some() {
            return pooled;
        }
        let mut ctx = CCtx::try_create()?;
        ctx.set_parameter(CParameter::CompressionLevel(LEVEL))
            .ok()?;
        // The blob names its dictionary; the frame need not.
        ctx.set_parameter(CParameter::DictIdFlag(false)).ok()?;
        ctx.set_parameter(CParameter::ChecksumFlag(false)).ok()?;
        if let Some(id) = dict {
            ctx.load_dictionary(&self.dictionary(id)?).ok()?;
        }
        Some(ctx)
    }

    fn put_encoder(&self, dict: Option<u32>, ctx: CCtx<'static>) {
        keep(&mut self.encoders.lock(), dict, ctx);
    }

    /// The text of a stored payload (TEXT as is, a blob decompressed).
    pub fn unpack(&self, stored: ValueRef<'_>) -> Result<Option<String>> {
        match stored {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|s| Some(s.to_string()))
                .map_err(|e| StoreError::Corrupt(format!("payload is not UTF-8: {e}"))),
            ValueRef::Blob(b) => self.unpack_blob(b).map(Some),
            ValueRef::Integer(i) => Ok(Some(i.to_string())),
            ValueRef::Real(f) => Ok(Some(f.to_string())),
        }
    }

    fn unpack_blob(&self, blob: &[u8]) -> Result<String> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("compressed payload: {why}"));
        let (dict, frame) = match blob.split_first() {
            Some((&TAG_PLAIN, rest)) => (None, rest),
            Some((&TAG_DICT, rest)) if rest.len() >= 4 => {
                let (id, frame) = rest.split_at(4);
                let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                (Some(id), frame)
            }
            _ => return Err(corrupt("unknown format")),
        };
        let size = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(n)) if n <= MAX_UNPACKED => n as usize,
            _ => return Err(corrupt("bad frame header")),
        };
        let mut ctx = match self.decoder(dict) {
            Some(c) => c,
            None => return Err(corrupt(&format!("unknown dictionary {dict:?}"))),
        };
        let mut out = Vec::with_capacity(size);
        let res = ctx.decompress(&mut out, frame);
        self.put_decoder(dict, ctx);
        match res {
            Ok(n) if n == size => {}
            _ => return Err(corrupt("frame does not decompress")),
        }
        String::from_utf8(out).map_err(|_| corrupt("not UTF-8"))
    }

    fn decoder(&self, dict: Option<u32>) -> Option<DCtx<'static>> {
        let pooled = take(&mut self.decoders.lock(), dict);
        if pooled.is_some() {
            return pooled;
        }
        let mut ctx = DCtx::try_create()?;
        if let Some(id) = dict {
            ctx.load_dictionary(&self.dictionary(id)?).ok()?;
        }
        Some(ctx)
    }

    fn dictionary(&self, id: u32) -> Option<Arc<[u8]>> {
        self.dicts.read().get(&id).cloned()
    }

    fn put_decoder(&self, dict: Option<u32>, ctx: DCtx<'static>) {
        keep(&mut self.decoders.lock(), dict, ctx);
    }

    /// Adds `text` to the training sample while one is being collected.
    fn sample(&self, text: &[u8]) {
        let mut s = self.sampler.lock();
        s.seen += text.len() as u64;
        if s.seen < s.start_at
            || s.data.len() >= SAMPLE_BYTES
            || self.training.load(Ordering::Acquire)
        {
            return;
        }
        let part = &text[..text.len().min(SAMPLE_MAX_EACH)];
        s.data.extend_from_slice(part);
        s.sizes.push(part.len());
    }

    /// A full sample to train the next dictionary from, once; `None` while
    /// sampling or training is under way.
    fn take_sample(&self) -> Option<(Vec<u8>, Vec<usize>)> {
        let mut s = self.sampler.lock();
        if s.data.len() < SAMPLE_BYTES || self.training.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some((std::mem::take(&mut s.data), std::mem::take(&mut s.sizes)))
    }

    /// Makes a committed dictionary known and the one to compress with.
    fn install(&self, id: u32, dict: Arc<[u8]>) {
        self.dicts.write().insert(id, dict);
        *self.current.write() = Some(id);
        self.encoders.lock().clear();
        self.finish_training(true);
    }

    /// Ends a training attempt: the next sample starts after the next
    /// stretch of data (also after a failure, so a sample zstd cannot train
    /// from is not retried on every upload).
    fn finish_training(&self, trained: bool) {
        let mut s = self.sampler.lock();
        s.seen = 0;
        s.start_at = s.stretch;
        s.data.clear();
        s.sizes.clear();
        if trained {
            s.stretch = (s.stretch * 2).min(RETRAIN_MAX);
        }
        drop(s);
        self.training.store(false, Ordering::Release);
    }

    /// The dictionary new payloads are compressed with.
    pub fn current_dictionary(&self) -> Option<u32> {
        *self.current.read()
    }
}

impl Store {
    /// Trains the next payload dictionary, on its own thread, when the
    /// codec has a full sample: called after uploads, never blocks them.
    pub(crate) fn train_payload_dictionary_if_due(&self) {
        let Some((data, sizes)) = self.codec().take_sample() else {
            return;
        };
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("tracebox-zdict".into())
            .spawn(move || store.train_payload_dictionary(&data, &sizes));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start dictionary training");
            self.codec().finish_training(false);
        }
    }

    fn train_payload_dictionary(&self, data: &[u8], sizes: &[usize]) {
        let started = std::time::Instant::now();
        let dict: Arc<[u8]> = match zstd::dict::from_continuous(data, sizes, DICT_BYTES) {
            Ok(d) => d.into(),
            Err(e) => {
                tracing::info!(error = %e, samples = sizes.len(), "no payload dictionary trained");
                self.codec().finish_training(false);
                return;
            }
        };
        let row = dict.clone();
        let stored = self.write_blocking(move |c| {
            c.prepare_cached("INSERT INTO payload_dicts (dict, created) VALUES (?1, ?2)")?
                .execute(rusqlite::params![&row[..], crate::domain::now_ms()])?;
            u32::try_from(c.last_insert_rowid())
                .map_err(|_| StoreError::Invalid("dictionary id out of range".into()))
        });
        match stored {
            Ok(id) => {
                tracing::info!(
                    id,
                    bytes = dict.len(),
                    samples = sizes.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "trained a payload dictionary"
                );
                self.codec().install(id, dict);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not store a payload dictionary");
                self.codec().finish_training(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(i: usize) -> String {
        format!(
            r#"{{"messages":[{{"role":"system","content":"You are a helpful assistant for an online store. Answer briefly."}},{{"role":"user","content":"Where is order {i}? It was due on day {} of the month."}}],"model":"gpt-4o-mini"}}"#,
            i % 28
        )
    }

    #[test]
    fn short_payloads_stay_text_and_long_ones_round_trip() {
        let codec = Codec::default();
        assert_eq!(codec.pack("{}".into()), Payload::Text("{}".into()));
        let text = chat(7).repeat(3);
        let Payload::Packed(blob) = codec.pack(text.clone()) else {
            panic!("a repetitive payload should compress");
        };
        assert_eq!(blob[0], TAG_PLAIN);
        assert!(
            blob.len() < text.len() / 2,
            "{} of {}",
            blob.len(),
            text.len()
        );
        let back = codec.unpack(ValueRef::Blob(&blob)).unwrap();
        assert_eq!(back.as_deref(), Some(text.as_str()));
        assert_eq!(
            codec.unpack(ValueRef::Text(b"[1]")).unwrap().as_deref(),
            Some("[1]")
        );
        assert_eq!(codec.unpack(ValueRef::Null).unwrap(), None);
    }

    #[test]
    fn a_dictionary_compresses_small_payloads_and_is_needed_to_read_them() {
        let samples: Vec<String> = (0..2000).map(chat).collect();
        let sizes: Vec<usize> = samples.iter().map(String::len).collect();
        let dict = zstd::dict::from_continuous(samples.concat().as_bytes(), &sizes, 4096).unwrap();
        let codec = Codec::default();
        let text = chat(123_456);
        let Payload::Packed(plain) = codec.pack(text.clone()) else {
            panic!("should compress");
        };
        codec.dicts.write().insert(5, dict.into());
        *codec.current.write() = Some(5);
        let Payload::Packed(small) = codec.pack(text.clone()) else {
            panic!("should compress");
        };
        assert_eq!(small[0], TAG_DICT);
        assert_eq!(&small[1..5], &5u32.to_le_bytes());
        assert!(
            small.len() * 2 < plain.len(),
            "with dictionary {} bytes, without {}",
            small.len(),
            plain.len()
        );
        assert_eq!(
            codec.unpack(ValueRef::Blob(&small)).unwrap().as_deref(),
            Some(text.as_str())
        );
        // Blobs made without it still read back.
        assert_eq!(
            codec.unpack(ValueRef::Blob(&plain)).unwrap().as_deref(),
            Some(text.as_str())
        );
        // Another codec that does not know dictionary 5 reports corruption
        // rather than guessing.
        let err = Codec::default().unpack(ValueRef::Blob(&small)).unwrap_err();
        assert!(err.to_string().contains("unknown dictionary"), "{err}");
        let err = codec.unpack(ValueRef::Blob(&[9, 1, 2])).unwrap_err();
        assert!(err.to_string().contains("unknown format"), "{err}");
        let mut cut = small.clone();
        cut.truncate(small.len() - 3);
        assert!(codec.unpack(ValueRef::Blob(&cut)).is_err());
    }

    fn upload(trace: u32, spans: u8) -> crate::domain::SpanBatch {
        use crate::domain::OtelTraceId;
        use crate::domain::semconv::RawSpan;
        let mut tid = [0u8; 16];
        tid[..4].copy_from_slice(&trace.to_be_bytes());
        let raw = (0..spans).map(|i| {
            let attrs = serde_json::json!({
                "mlflow.spanInputs": chat(trace as usize * 10 + i as usize),
                "mlflow.spanOutputs": {"answer": chat(trace as usize + 7)},
            });
            RawSpan {
                trace_id: OtelTraceId(tid),
                name: format!("span {i}"),
                start_ns: 1_000_000_000 + i as i64,
                ..RawSpan::sample(0, i + 1, (i > 0).then_some(1), attrs)
            }
        });
        crate::domain::SpanBatch::from_raw(raw)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_train_a_dictionary_that_later_spans_use_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let exp = 0;
        let mut trace = 0u32;
        // About 1.5 KB of payload per trace: the first MiB is the sample.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while store.codec().current_dictionary().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "no dictionary after {trace} traces"
            );
            for _ in 0..20 {
                trace += 1;
                store.ingest_spans(exp, upload(trace, 3)).await.unwrap();
            }
            if trace > 1500 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        let dict = store.codec().current_dictionary();
        trace += 1;
        store.ingest_spans(exp, upload(trace, 3)).await.unwrap();
        let id =
            crate::domain::TraceId::from_otel(upload(trace, 1).spans[0].trace_id).into_string();
        // Stored as a blob made with the dictionary, well under the text.
        let (head, packed, text): (Vec<u8>, i64, i64) = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT substr(inputs, 1, 5), length(inputs), length(tb_text(inputs))
                     FROM spans ORDER BY id DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(head[0], TAG_DICT);
        assert_eq!(
            Some(u32::from_le_bytes([head[1], head[2], head[3], head[4]])),
            dict
        );
        assert!(packed * 3 < text, "{packed} bytes for {text}");
        let before = store.get_trace(id.clone()).await.unwrap();
        // (MLflow's span attributes hold JSON as a string; it is decoded.)
        let want: serde_json::Value = serde_json::from_str(&chat(trace as usize * 10 + 1)).unwrap();
        assert_eq!(before.spans[1].inputs.as_ref(), Some(&want));
        // The first traces (sampled, compressed without a dictionary) read
        // back too, as does everything after a restart.
        let first = crate::domain::TraceId::from_otel(upload(1, 1).spans[0].trace_id).into_string();
        let first_before = store.get_trace(first.clone()).await.unwrap();
        drop(store);
        let store = Store::open(dir.path(), Default::default()).unwrap();
        assert_eq!(store.codec().current_dictionary(), dict);
        let after = store.get_trace(id).await.unwrap();
        assert_eq!(format!("{:?}", after.spans), format!("{:?}", before.spans));
        let first_after = store.get_trace(first).await.unwrap();
        assert_eq!(
            format!("{:?}", first_after.spans),
            format!("{:?}", first_before.spans)
        );
        assert_eq!(
            first_after.spans[0].inputs.as_ref(),
            Some(&serde_json::from_str::<serde_json::Value>(&chat(10)).unwrap())
        );
    }

    #[test]
    fn context_pools_keep_the_most_recent_and_stay_bounded() {
        let mut idle = Vec::new();
        for i in 0..20u32 {
            keep(&mut idle, Some(i % 3), i);
        }
        assert_eq!(idle.len(), MAX_IDLE_CONTEXTS);
        let kept: Vec<u32> = idle.iter().map(|(_, c)| *c).collect();
        assert_eq!(kept, (12..20).collect::<Vec<_>>());
        // The most recent context for a dictionary comes out first.
        assert_eq!(take(&mut idle, Some(1)), Some(19));
        assert_eq!(take(&mut idle, Some(1)), Some(16));
        assert_eq!(take(&mut idle, Some(7)), None);
        assert_eq!(idle.len(), MAX_IDLE_CONTEXTS - 2);
    }

    #[test]
    fn samples_the_first_payloads_once_then_waits_for_a_stretch() {
        let codec = Codec::default();
        let mut n = 0;
        while codec.take_sample().is_none() {
            codec.pack(chat(n));
            n += 1;
            assert!(n < 100_000, "never got a full sample");
        }
        // Only one training at a time.
        assert!(codec.take_sample().is_none());
        codec.pack(chat(1));
        codec.finish_training(true);
        let s = codec.sampler.lock();
        assert_eq!(
            (s.seen, s.start_at, s.stretch),
            (0, RETRAIN_FIRST, RETRAIN_FIRST * 2)
        );
        assert!(s.data.is_empty());
    }
}
