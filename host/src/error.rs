//! Errors at the library's boundaries: each names what is wrong and where.

use std::path::PathBuf;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config {}: {message}", path.display())]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// The parser's message, with line, column and key.
        message: String,
    },
    /// A key has a value that cannot work.
    #[error("invalid config {}: `{key}` {message}", path.display())]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// Dotted name of the offending key.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

/// A plugin file that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {} rejected: {reason}", path.display())]
pub struct PluginRejected {
    /// The plugin file.
    pub path: PathBuf,
    /// Why it was rejected.
    pub reason: String,
}

/// An output table that exists with a shape other than the plugin declares.
#[derive(Debug, thiserror::Error)]
#[error("table `{table}` does not match output `{output}` of plugin `{plugin}`: {message}")]
pub struct SchemaMismatch {
    /// The table in the database.
    pub table: String,
    /// The output that writes it.
    pub output: String,
    /// The plugin that declares the output.
    pub plugin: String,
    /// Which column differs, and how.
    pub message: String,
}

/// A checkpoint refused because another process checkpointed the lane
/// since this one last did: the lane has moved to another owner (a group
/// rebalance while this process was stalled), and committing would write
/// what the new owner writes too.
#[derive(Debug, thiserror::Error)]
#[error(
    "lane {lane} was checkpointed by another process (its stored offset is {}, this process \
     last stored {}): the lane belongs to another process now, and this one stops it without \
     committing",
    offset_text(*stored),
    offset_text(*expected)
)]
pub struct Fenced {
    /// The lane.
    pub lane: crate::model::LaneKey,
    /// The offset this process last stored, if any.
    pub expected: Option<i64>,
    /// The offset the store holds.
    pub stored: Option<i64>,
}

fn offset_text(offset: Option<i64>) -> String {
    offset.map_or_else(|| "none".to_owned(), |o| o.to_string())
}
