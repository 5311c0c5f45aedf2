//! Logs go to journald when systemd connected our stderr to it
//! (`JOURNAL_STREAM`), else to stderr. No layer here ever records headers.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub fn init(level: Option<&str>) {
    let filter = level
        .and_then(|l| l.parse::<EnvFilter>().ok())
        .or_else(|| EnvFilter::try_from_env("MITZO_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(journald)
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
