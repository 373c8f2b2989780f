use std::fmt;

/// Why a record could not be parsed. The `Display` text is meant for a
/// person reading a dead letter, so it names the field and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The bytes are not JSON (syntax error, truncated input, trailing
    /// characters, a duplicate field).
    MalformedJson {
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid JSON, but not an object; `found` is e.g. "an array".
    NotAnObject { found: &'static str },
    /// A field is present but its value can't be used.
    InvalidField { field: &'static str, reason: String },
    /// A field the record means nothing without is missing or `null`.
    MissingField { field: &'static str },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedJson {
                line,
                column,
                message,
            } => write!(
                f,
                "malformed JSON at line {line} column {column}: {message}"
            ),
            Self::NotAnObject { found } => write!(f, "expected a JSON object, found {found}"),
            Self::InvalidField { field, reason } => write!(f, "field `{field}`: {reason}"),
            Self::MissingField { field } => write!(f, "missing field `{field}`"),
        }
    }
}

impl std::error::Error for FormatError {}

impl FormatError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

impl From<serde_json::Error> for FormatError {
    fn from(e: serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its message; we report
        // the position ourselves, in front.
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        Self::MalformedJson {
            line: e.line(),
            column: e.column(),
            message,
        }
    }
}
