//! The integration tests that share one binary (see `tests/all.rs`).

mod agent_api_key;
mod auth_matrix;
mod files_raw;
mod files_traversal;
mod files_write;
mod http_limits;
mod review;
mod sessions;
mod sessions_retention;
mod sessions_streaming;
mod sessions_titles;
mod tasks;
