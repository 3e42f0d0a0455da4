//! Command-line interface: one subcommand per stage, plus the tools beside the pipeline.
//! Only `lib.rs` turns these into the stages' own options; no stage imports this module.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cleanmig",
    version,
    about = "Rebuild business tables from trusted API sources in reviewable stages",
    long_about = "Rebuild a Supabase database's business tables (auth.users, unified_profiles, \
transactions, enrollments) from the trusted `xendit` and `systemeio` source tables.\n\n\
Stages: extract -> transform -> approve -> load. Every stage writes artifacts under \
--artifacts that people can inspect with `cleanmig query` before anything touches production."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Directory that holds the artifacts of every stage.
    #[arg(
        long,
        env = "CLEANMIG_ARTIFACTS",
        default_value = "artifacts",
        global = true
    )]
    pub artifacts: PathBuf,

    /// Directory that holds the pipeline SQL and its configuration.
    #[arg(
        long,
        env = "CLEANMIG_PIPELINE",
        default_value = "pipeline",
        global = true
    )]
    pub pipeline: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Connection string (postgresql://user@host:port/db?sslmode=require).
    /// Without it: DATABASE_URL, then libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream the source and destination tables into artifacts/extract/*.parquet.
    Extract(ExtractArgs),
    /// Run pipeline/*.sql over the extract and write artifacts/stage/.
    Transform(TransformArgs),
    /// Run SQL over every artifact (no SQL: interactive prompt).
    Query(QueryArgs),
    /// Freeze the reviewed artifacts into artifacts/approved.json.
    Approve(ApproveArgs),
    /// Load the approved artifacts in one transaction (dry run unless --apply).
    Load(LoadArgs),
    /// Restore the destination tables from a load's backup (dry run unless --apply).
    Rollback(RollbackArgs),
    /// Show artifacts, approval, source drift and the last runs.
    Status(StatusArgs),
    /// Render artifacts/stage/review.html (transform writes it too) and print its path.
    Review,
    /// Trace one person (EMAIL) or one payment (--key) through the pipeline, from the artifacts.
    Explain(ExplainArgs),
    /// A throwaway local Postgres for trying the tool.
    #[command(subcommand)]
    DevDb(DevDbCommand),
    /// Fill a database with realistic synthetic data (schema included).
    DemoData(DemoDataArgs),
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct TransformArgs {
    /// Memory pool of the query engine, in MiB. Sorts and aggregations spill to disk (in the
    /// artifacts directory) beyond it; a join that needs more stops with an error naming this
    /// option.
    #[arg(long, env = "CLEANMIG_MEMORY_LIMIT_MIB", default_value_t = crate::transform::DEFAULT_MEMORY_LIMIT_MIB)]
    pub memory_limit_mib: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// SQL to run; without it an interactive prompt opens.
    pub sql: Option<String>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Accept a failing blocking check by name (repeatable); needs --reason.
    #[arg(long = "accept", value_name = "CHECK")]
    pub accept: Vec<String>,
    /// Why the accepted checks may fail; recorded in the approval.
    #[arg(long, requires = "accept")]
    pub reason: Option<String>,
    /// Who approves (default: $USER).
    #[arg(long, env = "USER")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum DependentsPolicy {
    /// Stop and list the rows that reference what would be deleted.
    #[default]
    Refuse,
    /// Delete the referencing rows too.
    Delete,
    /// Keep the referenced profiles and transactions.
    Keep,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Commit. Without it the load runs completely and then rolls back.
    #[arg(long)]
    pub apply: bool,
    /// What to do with rows of other tables that reference rows about to be deleted.
    #[arg(long, value_enum, default_value_t = DependentsPolicy::Refuse)]
    pub dependents: DependentsPolicy,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
}

/// Timeouts of a load or rollback transaction.
#[derive(Debug, Args)]
pub struct TimeoutArgs {
    /// Give up on a lock after this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub lock_timeout_ms: u64,
    /// Give up on any one statement after this many milliseconds.
    #[arg(long, default_value_t = 300_000)]
    pub statement_timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The run id from `cleanmig status` or population_operation_log.
    #[arg(long = "run")]
    pub run_id: String,
    /// Commit. Without it the rollback runs and then rolls back.
    #[arg(long)]
    pub apply: bool,
    /// Also delete auth users that run created, if they never signed in.
    #[arg(long)]
    pub remove_created_users: bool,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum ExplainFormat {
    /// Tables for a terminal.
    #[default]
    Text,
    /// One JSON document, for scripts.
    Json,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["email", "key"])))]
pub struct ExplainArgs {
    /// The person's email (any case and spacing).
    pub email: Option<String>,
    /// A payment's External ID (Xendit): the trace of its payer.
    #[arg(long, value_name = "EXTERNAL_ID")]
    pub key: Option<String>,
    /// How to print the trace.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    pub format: ExplainFormat,
}

#[derive(Debug, Subcommand)]
pub enum DevDbCommand {
    /// Start a private cluster in --dir and print its URL.
    Start(DevDbArgs),
    /// Stop the cluster and remove its directory.
    Stop(DevDbArgs),
    /// Print the URL of the running cluster.
    Url(DevDbArgs),
}

#[derive(Debug, Args)]
pub struct DevDbArgs {
    /// Where the cluster lives.
    #[arg(long, env = "CLEANMIG_DEVDB", default_value = ".devdb")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoDataArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// 1.0 reproduces production's row counts; 100 is about 2.4 million source rows.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Seed of the random generator; the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Create the source tables in their legacy CSV-import shape.
    #[arg(long)]
    pub legacy: bool,
    /// Where to write the ground truth (what a correct migration must produce).
    #[arg(long, default_value = "artifacts/demo/ground_truth.json")]
    pub ground_truth: PathBuf,
}
