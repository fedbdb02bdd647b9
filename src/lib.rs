//! tracebox: a self-hosted observability server for LLM and agent
//! applications, speaking MLflow's tracing API and OpenTelemetry.
//!
//! See ARCHITECTURE.md for the map. Data flows one way:
//! ingest (api) → store (one transaction, then 200) → index / judge queue → UI and API reads.

pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod domain;
pub mod index;
pub mod judge;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod query;
pub mod store;
pub mod web;

use std::time::Instant;

use cli::{Cli, Command};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args.into_config()?),
        Command::Backup(args) => ops::backup::backup(args),
        Command::Restore(args) => ops::backup::restore(args),
        Command::Export(args) => ops::export::export(args),
        Command::Import(args) => ops::export::import(args),
        Command::Judges(args) => judge::cli::run(args),
        Command::Reindex(args) => reindex(&args.data),
        Command::Bench(args) => bench::run(args),
    }
}

/// `tracebox reindex`: drops the full-text index's documents and indexes
/// every span in the database again, with a progress bar. Takes the data
/// directory's lock, so it refuses to run beside a server.
fn reindex(data: &std::path::Path) -> anyhow::Result<()> {
    if !data.join("tracebox.db").exists() {
        anyhow::bail!("no tracebox database in {}", data.display());
    }
    let _lock = ops::lock::DataLock::acquire(data)?;
    let store = store::Store::open(data, store::StoreOptions::default())?;
    let (index, _) = index::SearchIndex::open(&data.join(index::DIR))?;
    index.open_writer()?;
    let started = Instant::now();
    let pass = index::indexer::rebuild(&index, &store)?;
    eprintln!(
        "reindexed {} spans in {:.1} s ({} documents, {:.1} MB)",
        pass.spans,
        started.elapsed().as_secs_f64(),
        index.num_docs(),
        index.size_bytes() as f64 / 1e6
    );
    Ok(())
}

fn serve(config: config::Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let http = tokio::net::TcpListener::bind((config.host, config.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind {}:{}: {e}", config.host, config.port))?;
        let grpc = match config.otlp_grpc_port {
            Some(p) => Some(
                tokio::net::TcpListener::bind((config.host, p))
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot bind OTLP/gRPC port {p}: {e} (use --otlp-grpc-port 0 to disable)"))?,
            ),
            None => None,
        };
        let addr = http.local_addr()?;
        let grpc_addr = grpc.as_ref().map(|l| l.local_addr()).transpose()?;
        let app = app::App::start(config)?;
        let host = match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        // Tests and scripts read this line to learn the port.
        println!("tracebox listening on http://{host}:{}", addr.port());
        if let Some(g) = grpc_addr {
            println!("tracebox OTLP/gRPC on {g}");
        }
        tracing::info!(
            %addr,
            startup_ms = started.elapsed().as_millis() as u64,
            "ready"
        );
        app.serve(http, grpc, shutdown_signal()).await
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
