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

    /// Values the load would overwrite or delete changed since extraction.
    #[error("{count} values the load would overwrite or delete changed since extraction:\n{summary}\nnothing was changed; the full list is in {artifact}. Re-run `cleanmig extract`, `cleanmig transform` and `cleanmig approve` on current data")]
    ValueDrift {
        count: u64,
        summary: String,
        artifact: String,
    },

    /// Rows a rollback would put back were changed by the app after the load.
    #[error("{count} rows the load wrote were changed by the app since:\n{summary}\nnothing was changed: a rollback never overwrites what the app wrote. The full list is in {artifact}")]
    RollbackConflict {
        count: u64,
        summary: String,
        artifact: String,
    },

    /// The connection broke while the run was committing: it may or may not have committed.
    #[error("the connection to the database broke while committing, so whether the run committed is not known here; `cleanmig status` tells (a run that committed shows `success`)")]
    CommitOutcomeUnknown,

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
