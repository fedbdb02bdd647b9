//! Integration tests: each boots the real `tracebox` binary on port 0 with a
//! temporary data directory and talks to it over HTTP, as clients do.
//! One test binary (this crate) keeps link time down.

mod fake_llm;
mod fuzz;
mod harness;
mod judges;
mod mlflow_api;
mod ops_auth;
mod ops_crash;
mod ops_disk;
mod ops_forward;
mod ops_limits;
mod ops_load;
mod ops_logs;
mod ops_tools;
mod otlp_grpc;
mod otlp_http;
mod search;
mod search_plans;
mod sessions_api;
mod tidy;
mod web;
mod web_sessions;
