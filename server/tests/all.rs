//! One test binary for the integration tests that touch no process-global
//! state (each drives its own `mitzod` process): linked once instead of
//! once per file. Tests that need root, change the process (subreaper,
//! signals, namespaces) or hold a fixed port keep binaries of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)] // a test fails by panicking; raw fds and pre_exec set-ups

mod common;
mod files_support;
mod sessions_support;
mod suite;
