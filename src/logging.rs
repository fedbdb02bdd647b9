//! Structured logs with `tracing`: human-readable text by default, one JSON
//! object per line with `--log-format json`. `RUST_LOG` overrides the level.
//!
//! In JSON mode everything the process writes to stderr is JSON: panics go
//! through `tracing` too (instead of the default hook's plain text), and
//! `main` reports a fatal error as a log event. Each HTTP request's events
//! carry its `request_id` (see `api::observe`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tantivy=warn,hyper=warn,h2=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
    if format == LogFormat::Json {
        std::panic::set_hook(Box::new(|info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(s) => s.to_string(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "panic".into()),
            };
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let thread = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string();
            tracing::error!(panic = %message, %location, %thread, "panic");
        }));
    }
}

/// Reports the error that ends the process, in the configured format.
pub fn fatal(format: LogFormat, e: &anyhow::Error) {
    match format {
        LogFormat::Json => tracing::error!(error = %format!("{e:#}"), "tracebox stopped"),
        LogFormat::Text => eprintln!("tracebox: {e:#}"),
    }
}
