//! The sandbox's own error type: the daemon maps it into its own.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy cannot be built or enforced as asked (a grant that would
    /// defeat it, a kernel without the feature, a filter that fails).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// A value given to the sandbox is malformed (a size, an argument).
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A misuse of the API (a command spawned twice, ...).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
