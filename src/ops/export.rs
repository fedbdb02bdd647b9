//! `tracebox export` and `tracebox import`.
//!
//! Export reads a data directory (beside a running server if there is one:
//! SQLite's WAL gives it a consistent view without locking anybody out)
//! through the same query engine as the API, so `--filter` means what it
//! means in `search_traces`. `jsonl` writes one trace per line in MLflow's
//! `Trace.to_json()` shape, info and spans; `csv` one summary row per
//! trace.
//!
//! Import loads a `jsonl` export into a data directory through the
//! ordinary ingestion path (spans, then trace info, then assessments, with
//! the ingestion hooks), which is idempotent: spans merge by id, info and
//! tags are upserts, assessments keep their ids. A trace that only ever
//! arrived as spans is imported as spans (plus its tags and assessments),
//! so it does not come back looking as if a client had sent its info. It needs the directory to
//! itself (a running server holds the lock), because a server's derived
//! state (index, sessions, judge queue) must see what is imported.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::api::mlflow::trace_file;
use crate::cli::DataArgs;
use crate::domain::SpanBatch;
use crate::query::{QueryEngine, QueryError, SearchRequest};
use crate::store::experiments::ViewType;
use crate::store::{Store, StoreOptions, TraceUpsert};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One trace per line: `{"info": ..., "data": {"spans": [...]}}`.
    Jsonl,
    /// One row per trace: id, experiment, time, state, duration, name,
    /// session, user, tokens, previews, tags.
    Csv,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Experiment id to export (repeatable; default: every experiment).
    #[arg(long)]
    pub experiment: Vec<i64>,
    /// Only traces matching this filter (the `search_traces` grammar).
    #[arg(long)]
    pub filter: Option<String>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A `tracebox export --format jsonl` file (`-` for standard input).
    pub file: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Put every trace into this experiment (default: the experiment id
    /// recorded in each trace, which must exist).
    #[arg(long)]
    pub experiment: Option<i64>,
}

/// Traces fetched with spans per round trip.
const PAGE: usize = 200;

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let db = args.data.data.join(super::backup::DB_FILE);
    if !db.exists() {
        anyhow::bail!("no tracebox database at {}", db.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = Store::open(&args.data.data, StoreOptions::default())?;
        let out: Box<dyn Write> = match &args.output {
            Some(p) => Box::new(std::fs::File::create(p)?),
            None => Box::new(std::io::stdout().lock()),
        };
        let n = export_to(&store, &args, BufWriter::new(out)).await?;
        eprintln!("exported {n} traces");
        Ok(())
    })
}

async fn export_to(store: &Store, args: &ExportArgs, mut out: impl Write) -> anyhow::Result<u64> {
    let experiment_ids = if args.experiment.is_empty() {
        store
            .list_experiments(ViewType::All)
            .await?
            .into_iter()
            .map(|e| e.experiment_id)
            .collect()
    } else {
        args.experiment.clone()
    };
    let engine = QueryEngine::new(store.clone());
    if let Format::Csv = args.format {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(CSV_HEADER)?;
        w.flush()?;
    }
    let mut token = None;
    let mut n = 0u64;
    loop {
        let page = engine
            .search(SearchRequest {
                experiment_ids: experiment_ids.clone(),
                filter: args.filter.clone(),
                order_by: vec!["timestamp_ms ASC".into()],
                max_results: PAGE,
                page_token: token.take(),
                text: None,
            })
            .await
            .map_err(|e| match e {
                // The full-text index belongs to the server (which may be
                // running): export reads SQLite only.
                QueryError::Index(_) => anyhow::anyhow!(
                    "--filter: full-text conditions (trace.text, span.content) need the \
                     server's index and are not available to export; use the other filter forms"
                ),
                other => anyhow::anyhow!("{other}"),
            })?;
        match args.format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut out);
                for t in &page.traces {
                    w.write_record(csv_row(t))?;
                }
                w.flush()?;
            }
            Format::Jsonl => {
                let ids = page.traces.iter().map(|t| t.trace_id.clone()).collect();
                for d in store.get_traces(ids).await? {
                    serde_json::to_writer(&mut out, &trace_file::trace_dict(&d))?;
                    out.write_all(b"\n")?;
                }
            }
        }
        n += page.traces.len() as u64;
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    out.flush()?;
    Ok(n)
}

const CSV_HEADER: &[&str] = &[
    "trace_id",
    "experiment_id",
    "request_time",
    "state",
    "execution_ms",
    "name",
    "session_id",
    "user_id",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "request_preview",
    "response_preview",
    "tags",
];

fn csv_row(t: &crate::domain::TraceInfo) -> Vec<String> {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        t.trace_id.clone(),
        t.experiment_id.to_string(),
        crate::api::mlflow::dto::timestamp(t.request_time_ms),
        t.state.as_str().to_string(),
        opt(t.execution_time_ms),
        t.name().unwrap_or_default().to_string(),
        t.session_id().unwrap_or_default().to_string(),
        t.user_id().unwrap_or_default().to_string(),
        opt(t.tokens.input),
        opt(t.tokens.output),
        opt(t.tokens.total),
        t.request_preview.clone().unwrap_or_default(),
        t.response_preview.clone().unwrap_or_default(),
        serde_json::to_string(&t.tags).unwrap_or_default(),
    ]
}

/// Traces imported concurrently (their writes share group commits).
const IMPORT_CONCURRENCY: usize = 16;

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let mut config = crate::config::Config::for_dir(&args.data.data);
    config.file = args.data.file_config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = crate::app::App::start(config)?;
        let store = app.state.store.clone();
        let reader: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            Box::new(BufReader::new(std::fs::File::open(&args.file).map_err(
                |e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()),
            )?))
        };
        let sem = Arc::new(tokio::sync::Semaphore::new(IMPORT_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        let mut lines = 0u64;
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let mut parsed = trace_file::parse_trace_dict(line.as_bytes())
                .map_err(|e| anyhow::anyhow!("line {}: {}", i + 1, e.message))?;
            if let Some(exp) = args.experiment {
                parsed.info.experiment_id = exp;
            }
            lines += 1;
            let permit = sem.clone().acquire_owned().await?;
            let store = store.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let r = import_one(&store, parsed).await;
                r.map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))
            });
            while let Some(done) = tasks.try_join_next() {
                done??;
            }
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        eprintln!("imported {lines} traces into {}", args.data.data.display());
        Ok(())
    })
}

async fn import_one(store: &Store, t: trace_file::ParsedTrace) -> anyhow::Result<()> {
    let exp = t.info.experiment_id;
    let missing = |e: crate::store::StoreError| match e {
        crate::store::StoreError::NotFound(m) if m.contains("experiment") => anyhow::anyhow!(
            "{m}: create it first, or pass --experiment ID to import into another one"
        ),
        other => anyhow::anyhow!("{other}"),
    };
    let had_spans = !t.spans.is_empty();
    if had_spans {
        store
            .ingest_spans(exp, SpanBatch::from_raw(t.spans))
            .await
            .map_err(missing)?;
    }
    let client_sent = t
        .info
        .metadata
        .get(crate::domain::metadata_keys::INFO_FINALIZED)
        .is_some_and(|v| v == "true");
    if client_sent || !had_spans {
        store
            .upsert_trace_info(TraceUpsert::new(t.info, store.codec()), t.assessments)
            .await
            .map_err(missing)?;
        return Ok(());
    }
    // A trace that only ever came as spans: its info is derived from them
    // (re-derived just now); only tags set later and assessments are not.
    let id = t.info.trace_id;
    for (k, v) in t.info.tags {
        store.set_trace_tag(id.clone(), k, v).await?;
    }
    for a in t.assessments {
        store.create_assessment(a).await?;
    }
    Ok(())
}
