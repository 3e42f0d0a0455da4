//! cleanmig: rebuild a Supabase database's business tables from trusted API sources.
//!
//! Data flows one way:
//! sources -> [`extract`] -> `artifacts/extract/*.parquet` -> [`transform`] (SQL in `pipeline/`)
//! -> `artifacts/stage/*.parquet` -> [`approve`] -> `artifacts/approved.json` -> [`load`].
//! [`query`] reads any artifact; [`review`] renders the review page and explains one person. [`tools`] holds what stands beside the pipeline:
//! a throwaway Postgres and the demo-data generator.

pub mod approve;
pub mod artifacts;
pub mod cli;
pub mod connect;
pub mod error;
pub mod extract;
pub mod fingerprint;
pub mod load;
pub mod logging;
pub mod pg_arrow;
pub mod query;
pub mod review;
pub mod tools;
pub mod transform;

use anyhow::Result;
use cli::{Cli, Command};

/// Run one command to completion.
pub fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(cli))
}

async fn run_async(cli: Cli) -> Result<()> {
    let global = cli.global;
    let quiet = cli.quiet;
    match cli.command {
        Command::Extract(args) => extract::run(&global, &args, quiet).await.map(|_| ()),
        Command::Transform(args) => transform::run(&global, &args).await.map(|_| ()),
        Command::Query(args) => query::run(&global, &args).await,
        Command::Approve(args) => approve::run(&global, &args).await,
        Command::Load(args) => load::run(&global, &args).await,
        Command::Rollback(args) => load::rollback::run(&global, &args).await,
        Command::Status(args) => load::status::run(&global, &args).await,
        Command::Review => review::run(&review::ReviewOptions {
            artifacts: global.artifacts,
            pipeline: global.pipeline,
        })
        .await
        .map(|_| ()),
        Command::Explain(args) => {
            review::explain::run(&review::explain::ExplainOptions {
                artifacts: global.artifacts,
                pipeline: global.pipeline,
                email: args.email,
                key: args.key,
                format: match args.format {
                    cli::ExplainFormat::Text => review::explain::ExplainFormat::Text,
                    cli::ExplainFormat::Json => review::explain::ExplainFormat::Json,
                },
            })
            .await
        }
        Command::DevDb(cmd) => tools::devdb::command(cmd).await,
        Command::DemoData(args) => tools::demo_data::command(&args).await,
    }
}
