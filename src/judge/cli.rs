//! `tracebox judges list|add|start|stop|rm|backfill`.
//!
//! By default the command works on the data directory itself (SQLite in WAL
//! mode lets it run beside a server on the same directory: the server's
//! ingestion hook reads started judges from the database, so `start` and
//! `stop` take effect on the next upload). With `--url` it talks to a
//! running server over HTTP instead (the MLflow scorer routes and
//! `/api/tracebox/v1/judges`), e.g. on another machine.
//!
//! A backfill in data-directory mode runs its own judge runner for its
//! batch, cooperating with a server's runner if one is up; with `--url` the
//! server runs it and the command follows its progress.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::backfill;
use super::runner::{Runner, RunnerConfig, RunnerHandle};
use super::spec::{self, NewJudge};
use super::status::Status;
use super::{Judges, registry};
use crate::cli::DataArgs;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::query::QueryEngine;
use crate::store::{Store, StoreOptions, scorers};

#[derive(Debug, Args)]
pub struct JudgesArgs {
    #[command(subcommand)]
    pub command: JudgesCommand,
}

/// Where the command acts.
#[derive(Debug, Clone, Args)]
pub struct Target {
    #[command(flatten)]
    pub data: DataArgs,
    /// Use a running server's HTTP API instead of the data directory.
    #[arg(long, env = "TRACEBOX_URL")]
    pub url: Option<String>,
    /// Token for `--url` (the server's --auth-token).
    #[arg(long, env = "TRACEBOX_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Experiment id or name.
    #[arg(long, short = 'e', default_value = "0")]
    pub experiment: String,
}

#[derive(Debug, Subcommand)]
pub enum JudgesCommand {
    /// List judges with their state, queue and results.
    List {
        #[command(flatten)]
        target: Target,
        /// Every experiment (ignores --experiment).
        #[arg(long)]
        all: bool,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Register a judge (a new version if the name exists).
    Add {
        name: String,
        #[command(flatten)]
        target: Target,
        /// guidelines, safety, relevance, groundedness, correctness,
        /// expectations-guidelines, user-frustration, conversation-completeness,
        /// conversational-safety, conversational-guidelines, pii, or custom
        /// (make_judge with --instructions).
        #[arg(long)]
        kind: Option<String>,
        /// A guideline (repeatable) for guidelines judges.
        #[arg(long = "guidelines")]
        guidelines: Vec<String>,
        /// Instructions template for custom judges, using {{ inputs }},
        /// {{ outputs }}, {{ expectations }}, {{ trace }} or {{ conversation }}.
        #[arg(long)]
        instructions: Option<String>,
        /// Result type of custom judges: yes-no, bool, str, int, float, a|b|c.
        #[arg(long, default_value = "yes-no")]
        value_type: String,
        /// gateway:/NAME (tracebox.toml) or openai:/MODEL.
        #[arg(long)]
        model: Option<String>,
        /// A serialized scorer (MLflow's JSON) to register verbatim.
        #[arg(long, conflicts_with_all = ["kind", "instructions"])]
        from_file: Option<PathBuf>,
    },
    /// Start judging new traces.
    Start {
        name: String,
        #[command(flatten)]
        target: Target,
        /// Fraction of traces to judge (decided by trace id, as MLflow does).
        #[arg(long, default_value_t = 1.0)]
        sample_rate: f64,
        /// Only traces matching this search filter.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Stop judging new traces (pending evaluations are cancelled).
    Stop {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a judge (all versions, or one with --version).
    Rm {
        name: String,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Run a judge over stored traces matching a filter.
    Backfill {
        name: String,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        filter: Option<String>,
        /// Judge again traces this judge already judged.
        #[arg(long)]
        rerun: bool,
        /// At most this many traces (newest first).
        #[arg(long)]
        limit: Option<usize>,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
}

/// Runs a `tracebox judges` command.
pub fn run(args: JudgesArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match args.command {
            JudgesCommand::List { target, all, json } => list(&target, all, json).await,
            JudgesCommand::Add {
                name,
                target,
                kind,
                guidelines,
                instructions,
                value_type,
                model,
                from_file,
            } => {
                let payload = match from_file {
                    Some(p) => std::fs::read_to_string(&p)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?,
                    None => {
                        build_payload(&name, kind, guidelines, instructions, &value_type, model)?
                    }
                };
                add(&target, &name, payload).await
            }
            JudgesCommand::Start {
                name,
                target,
                sample_rate,
                filter,
            } => set_rate(&target, &name, sample_rate, filter).await,
            JudgesCommand::Stop { name, target } => set_rate(&target, &name, 0.0, None).await,
            JudgesCommand::Rm {
                name,
                target,
                version,
            } => rm(&target, &name, version).await,
            JudgesCommand::Backfill {
                name,
                target,
                filter,
                rerun,
                limit,
                no_progress,
            } => backfill_cmd(&target, &name, filter, rerun, limit, no_progress).await,
        }
    })
}

fn build_payload(
    name: &str,
    kind: Option<String>,
    guidelines: Vec<String>,
    instructions: Option<String>,
    value_type: &str,
    model: Option<String>,
) -> anyhow::Result<String> {
    let kind = kind.unwrap_or_else(|| {
        if instructions.is_some() {
            "custom".into()
        } else if !guidelines.is_empty() {
            "guidelines".into()
        } else {
            String::new()
        }
    });
    let judge = if kind == "custom" {
        NewJudge::Custom {
            instructions: instructions
                .ok_or_else(|| anyhow::anyhow!("--kind custom needs --instructions"))?,
            value_type: spec::value_type_schema(value_type).map_err(anyhow::Error::msg)?,
        }
    } else {
        let class = spec::BUILTIN_KINDS
            .iter()
            .find(|(k, c)| *k == kind || *c == kind)
            .map(|(_, c)| c.to_string())
            .ok_or_else(|| {
                let kinds: Vec<&str> = spec::BUILTIN_KINDS.iter().map(|(k, _)| *k).collect();
                anyhow::anyhow!("--kind must be one of: {}, custom", kinds.join(", "))
            })?;
        NewJudge::Builtin { class, guidelines }
    };
    spec::build(name, &judge, model.as_deref()).map_err(anyhow::Error::msg)
}

// ---------------------------------------------------------------- direct mode

fn config_for(target: &Target) -> anyhow::Result<Config> {
    let mut c = Config::for_dir(&target.data.data);
    c.file = target.data.file_config()?;
    Ok(c)
}

fn open_store(target: &Target) -> anyhow::Result<Store> {
    if !target.data.data.join("tracebox.db").exists() {
        anyhow::bail!(
            "no tracebox database in {} (use --data, or --url for a running server)",
            target.data.data.display()
        );
    }
    Ok(Store::open(&target.data.data, StoreOptions::default())?)
}

async fn experiment_id_direct(store: &Store, e: &str) -> anyhow::Result<i64> {
    if let Ok(id) = e.trim().parse::<i64>() {
        return Ok(id);
    }
    let name = e.to_string();
    Ok(store.get_experiment_by_name(name).await?.experiment_id)
}

// ---------------------------------------------------------------- http mode

struct Http {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Http {
    fn new(url: &str, token: Option<String>) -> Http {
        Http {
            base: url.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            token,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut rb = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v["message"].as_str().map(str::to_string).unwrap_or(text);
            anyhow::bail!("{status}: {msg}");
        }
        Ok(v)
    }

    async fn experiment_id(&self, e: &str) -> anyhow::Result<String> {
        if e.trim().parse::<i64>().is_ok() {
            return Ok(e.trim().to_string());
        }
        let q: String = form_urlencoded::byte_serialize(e.as_bytes()).collect();
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={q}"),
                None,
            )
            .await?;
        v["experiment"]["experiment_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("unexpected answer for experiment '{e}'"))
    }
}

// ---------------------------------------------------------------- commands

async fn list(target: &Target, all: bool, as_json: bool) -> anyhow::Result<()> {
    let status: Status = match &target.url {
        Some(url) => {
            let h = Http::new(url, target.auth_token.clone());
            let path = if all {
                "/api/tracebox/v1/judges".to_string()
            } else {
                format!(
                    "/api/tracebox/v1/judges?experiment_id={}",
                    h.experiment_id(&target.experiment).await?
                )
            };
            let v = h.call(reqwest::Method::GET, &path, None).await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            return print_status_json(&v);
        }
        None => {
            let store = open_store(target)?;
            let exp = if all {
                None
            } else {
                Some(experiment_id_direct(&store, &target.experiment).await?)
            };
            let judges = Judges::from_config(&config_for(target)?);
            super::status::collect(&store, &judges.models, judges.gate.capacity, exp).await?
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    print_status_json(&serde_json::to_value(&status)?)
}

fn print_status_json(v: &Value) -> anyhow::Result<()> {
    let rows = v["judges"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no judges registered");
    } else {
        println!(
            "{:<4} {:<24} {:<22} {:<26} {:<13} {:>5} {:>7} {:>9} {:>6} {:>6} {:>5}  FILTER",
            "EXP",
            "NAME",
            "KIND",
            "MODEL",
            "STATE",
            "RATE",
            "PENDING",
            "EVALUATED",
            "FAILED",
            "PASS",
            "SHED"
        );
        for j in &rows {
            let pass = j["pass_rate"]
                .as_f64()
                .map(|p| format!("{:.0}%", p * 100.0))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<4} {:<24} {:<22} {:<26} {:<13} {:>5} {:>7} {:>9} {:>6} {:>6} {:>5}  {}",
                j["experiment_id"].as_str().unwrap_or_default(),
                j["name"].as_str().unwrap_or_default(),
                j["kind"].as_str().unwrap_or_default(),
                j["model"].as_str().unwrap_or("-"),
                j["state"].as_str().unwrap_or_default(),
                j["sample_rate"].as_f64().unwrap_or_default(),
                j["pending"].as_i64().unwrap_or_default()
                    + j["running"].as_i64().unwrap_or_default(),
                j["evaluated"].as_i64().unwrap_or_default(),
                j["failed"].as_i64().unwrap_or_default(),
                pass,
                j["shed"].as_i64().unwrap_or_default(),
                j["filter_string"].as_str().unwrap_or(""),
            );
            if let Some(p) = j["problem"].as_str() {
                println!("     ! {p}");
            }
        }
    }
    let q = &v["queue"];
    println!(
        "queue: {} open of {} capacity, {} shed",
        q["depth"], q["capacity"], q["shed"]
    );
    for e in v["endpoints"].as_array().into_iter().flatten() {
        if e["circuit"] != "closed" {
            println!(
                "endpoint {}: circuit {} ({})",
                e["endpoint"].as_str().unwrap_or_default(),
                e["circuit"].as_str().unwrap_or_default(),
                e["last_error"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

async fn add(target: &Target, name: &str, payload: String) -> anyhow::Result<()> {
    let version = match &target.url {
        Some(url) => {
            let h = Http::new(url, target.auth_token.clone());
            let exp = h.experiment_id(&target.experiment).await?;
            let v = h
                .call(
                    reqwest::Method::POST,
                    "/api/3.0/mlflow/scorers/register",
                    Some(json!({"experiment_id": exp, "name": name, "serialized_scorer": payload})),
                )
                .await?;
            v["version"].as_i64().unwrap_or_default()
        }
        None => {
            let store = open_store(target)?;
            let exp = experiment_id_direct(&store, &target.experiment).await?;
            let judges = Judges::from_config(&config_for(target)?);
            let allow = judges.allow_custom_scorers;
            let n = name.to_string();
            store
                .write(move |c| registry::register(c, exp, &n, &payload, allow))
                .await?
                .version
        }
    };
    println!("registered judge '{name}' version {version}");
    Ok(())
}

async fn set_rate(
    target: &Target,
    name: &str,
    sample_rate: f64,
    filter: Option<String>,
) -> anyhow::Result<()> {
    match &target.url {
        Some(url) => {
            let h = Http::new(url, target.auth_token.clone());
            let exp = h.experiment_id(&target.experiment).await?;
            let mut body = json!({"experiment_id": exp, "name": name, "sample_rate": sample_rate});
            if let Some(f) = &filter {
                body["filter_string"] = json!(f);
            }
            h.call(
                reqwest::Method::PUT,
                "/api/3.0/mlflow/scorers/online-config",
                Some(body),
            )
            .await?;
        }
        None => {
            let store = open_store(target)?;
            let exp = experiment_id_direct(&store, &target.experiment).await?;
            let (n, f) = (name.to_string(), filter.clone());
            store
                .write(move |c| {
                    registry::upsert_online_config(c, exp, &n, sample_rate, f.as_deref())
                })
                .await?;
        }
    }
    if sample_rate > 0.0 {
        println!(
            "judge '{name}' started: sample rate {sample_rate}{}",
            filter.map(|f| format!(", filter {f}")).unwrap_or_default()
        );
    } else {
        println!("judge '{name}' stopped");
    }
    Ok(())
}

async fn rm(target: &Target, name: &str, version: Option<i64>) -> anyhow::Result<()> {
    match &target.url {
        Some(url) => {
            let h = Http::new(url, target.auth_token.clone());
            let exp = h.experiment_id(&target.experiment).await?;
            let mut body = json!({"experiment_id": exp, "name": name});
            if let Some(v) = version {
                body["version"] = json!(v);
            }
            h.call(
                reqwest::Method::DELETE,
                "/api/3.0/mlflow/scorers/delete",
                Some(body),
            )
            .await?;
        }
        None => {
            let store = open_store(target)?;
            let exp = experiment_id_direct(&store, &target.experiment).await?;
            let n = name.to_string();
            store
                .write(move |c| scorers::delete(c, exp, &n, version))
                .await?;
        }
    }
    match version {
        Some(v) => println!("deleted version {v} of judge '{name}'"),
        None => println!("deleted judge '{name}'"),
    }
    Ok(())
}

fn progress_bar(total: i64, hidden: bool) -> indicatif::ProgressBar {
    let pb = if hidden {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total.max(0) as u64)
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} judging [{bar:40}] {pos}/{len} traces ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

fn summary(p: &backfill::Progress) -> String {
    p.by_state
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn backfill_cmd(
    target: &Target,
    name: &str,
    filter: Option<String>,
    rerun: bool,
    limit: Option<usize>,
    no_progress: bool,
) -> anyhow::Result<()> {
    match &target.url {
        Some(url) => {
            let h = Http::new(url, target.auth_token.clone());
            let exp = h.experiment_id(&target.experiment).await?;
            let mut body = json!({"experiment_id": exp, "name": name, "rerun": rerun});
            if let Some(f) = &filter {
                body["filter_string"] = json!(f);
            }
            if let Some(l) = limit {
                body["max_traces"] = json!(l);
            }
            let started = h
                .call(
                    reqwest::Method::POST,
                    "/api/tracebox/v1/judges/backfill",
                    Some(body),
                )
                .await?;
            let batch = started["batch"].as_str().unwrap_or_default().to_string();
            let total = started["matched"].as_i64().unwrap_or_default();
            println!(
                "backfill {batch}: {total} matched, {} queued",
                started["queued"].as_i64().unwrap_or_default()
            );
            let pb = progress_bar(total, no_progress);
            loop {
                let v = h
                    .call(
                        reqwest::Method::GET,
                        &format!("/api/tracebox/v1/judges/backfill/{batch}"),
                        None,
                    )
                    .await?;
                let p: backfill::Progress = serde_json::from_value(v)?;
                pb.set_length(p.total.max(0) as u64);
                pb.set_position((p.total - p.open).max(0) as u64);
                if p.open == 0 {
                    pb.finish_and_clear();
                    println!("backfill done: {}", summary(&p));
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        None => {
            let store = open_store(target)?;
            let exp = experiment_id_direct(&store, &target.experiment).await?;
            let config = config_for(target)?;
            let judges = Judges::from_config(&config);
            let query = QueryEngine::new(store.clone());
            let started = backfill::start(
                &store,
                &query,
                &judges.gate,
                backfill::Request {
                    experiment_id: exp,
                    name: name.to_string(),
                    filter,
                    rerun,
                    limit,
                },
            )
            .await?;
            println!(
                "backfill {}: {} matched, {} queued",
                started.batch, started.matched, started.queued
            );
            let mut cfg = RunnerConfig::from_settings(judges.models.settings());
            cfg.batch = Some(started.batch.clone());
            // Backfilled traces are historical: no need to wait for them to settle.
            cfg.settle_ms = 0;
            let handle = RunnerHandle::spawn(Runner {
                store: store.clone(),
                query,
                models: judges.models.clone(),
                metrics: Arc::new(Metrics::new()),
                gate: judges.gate.clone(),
                cfg,
            });
            let pb = progress_bar(started.matched, no_progress);
            loop {
                let p = backfill::progress(&store, &started.batch).await?;
                pb.set_length(p.total.max(0) as u64);
                pb.set_position((p.total - p.open).max(0) as u64);
                if p.open == 0 {
                    pb.finish_and_clear();
                    handle.join().await;
                    println!("backfill done: {}", summary(&p));
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}
