//! Conditions a user must act on. Everything else is an `anyhow::Error` with context.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Refusal {
    /// No approval manifest, or one that does not cover what is on disk.
    #[error("no approval found at {path}; review the staged artifacts and run `cleanmig approve`")]
    NotApproved { path: String },

    /// A staged artifact differs from what was approved.
    #[error("artifact {artifact} changed after approval (sha256 differs); re-run `cleanmig transform` and `cleanmig approve`")]
    ArtifactModified { artifact: String },

    /// A source or destination table changed since extraction.
    #[error("table {table} changed since extraction ({detail}); re-run `cleanmig extract`, `cleanmig transform` and `cleanmig approve` on current data")]
    SourceDrift { table: String, detail: String },

    /// One or more blocking checks failed.
    #[error("blocking checks failed: {checks}; see {report}")]
    ValidationFailed { checks: String, report: String },

    /// A required column is missing from a source table.
    #[error("table {table} has no column for required `{column}` (accepted names: {accepted}); columns found: {found}. Add an alias to pipeline/source_columns.csv if the column has another name")]
    MissingColumn {
        table: String,
        column: String,
        accepted: String,
        found: String,
    },
}
