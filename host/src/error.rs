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
