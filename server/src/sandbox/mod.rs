//! Landlock confinement of agent subprocesses.

pub mod cli {
    use std::ffi::OsString;
    use std::path::Path;

    pub fn sandbox_exec(_policy: &Path, _command: &[OsString]) -> u8 {
        eprintln!("mitzod sandbox-exec: not built yet");
        2
    }
}

pub fn log_landlock_support(_mode: crate::config::LandlockMode) {}
