//! Integration tests: each boots the real `tracebox` binary on port 0 with a
//! temporary data directory and talks to it over HTTP, as clients do.
//! One test binary (this crate) keeps link time down.

mod harness;
mod mlflow_api;
mod otlp_http;
mod search;
mod search_plans;
mod tidy;
