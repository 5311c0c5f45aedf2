//! One test binary for the integration tests that touch no process-global
//! state (each drives its own `mitzod` process): linked once instead of
//! once per file. Tests that need root, change the process (subreaper,
//! signals, namespaces) or hold a fixed port keep binaries of their own.

mod common;
mod files_support;
mod sessions_support;
mod suite;
