//! cleanmig: rebuild a Supabase database's business tables from trusted API sources.
//!
//! Data flows one way:
//! sources -> [`extract`] -> `artifacts/extract/*.parquet` -> [`transform`] (SQL in `pipeline/`)
//! -> `artifacts/stage/*.parquet` -> [`approve`] -> `artifacts/approved.json` -> [`load`].
//! [`query`] reads any artifact; [`review`] renders the review page and explains one person. [`catalog`] is the one place that knows the destination
//! tables. [`tools`] holds what stands beside the pipeline: a throwaway Postgres and the
//! demo-data generator. `ARCHITECTURE.md` maps the modules.
//!
//! The command line ([`cli`]) is turned into each stage's plain options here, once; no stage
//! knows the argument parser.

pub mod approve;
pub mod artifacts;
pub mod catalog;
pub mod cli;
pub mod connect;
pub mod error;
pub mod extract;
pub mod fingerprint;
pub mod load;
pub mod logging;
pub mod pg;
pub mod pg_arrow;
pub mod query;
pub mod review;
pub mod sql;
pub mod tools;
pub mod transform;

use anyhow::Result;
use cli::{Cli, Command, DbArgs, GlobalArgs, TimeoutArgs};
use connect::ConnInfo;

/// Run one command to completion.
///
/// The extract runs on a single-threaded runtime: its two connections' drivers and decoders
/// are light work (the server's COPY and the Parquet writers' threads take the cores), and on
/// one thread a task woken by its connection costs no wake-up of another thread (at scale 100
/// about 128,000 `futex` calls on the multi-threaded runtime, under 2,000 here). Every other
/// command runs on all cores.
pub fn run(cli: Cli) -> Result<()> {
    runtime_for(&cli.command)?.block_on(run_async(cli))
}

fn runtime_for(command: &Command) -> Result<tokio::runtime::Runtime> {
    let mut builder = match command {
        Command::Extract(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    Ok(builder.enable_all().build()?)
}

fn conn(db: &DbArgs) -> Result<ConnInfo> {
    ConnInfo::resolve(db.database_url.as_deref())
}

fn timeouts(t: &TimeoutArgs) -> load::Timeouts {
    load::Timeouts {
        lock_ms: t.lock_timeout_ms,
        statement_ms: t.statement_timeout_ms,
    }
}

async fn run_async(cli: Cli) -> Result<()> {
    let GlobalArgs {
        artifacts,
        pipeline,
    } = cli.global;
    let quiet = cli.quiet;
    match cli.command {
        Command::Extract(args) => {
            let opts = extract::ExtractOptions {
                artifacts,
                pipeline,
                conn: conn(&args.db)?,
                progress: logging::show_progress(quiet),
            };
            extract::run(&opts).await.map(|_| ())
        }
        Command::Transform(args) => {
            let opts = transform::TransformOptions {
                artifacts,
                pipeline,
                memory_limit: args.memory_limit_mib * 1024 * 1024,
            };
            transform::run(&opts).await.map(|_| ())
        }
        Command::Query(args) => {
            let opts = query::QueryOptions {
                artifacts,
                pipeline,
                sql: args.sql,
                format: match args.format {
                    cli::OutputFormat::Table => query::Format::Table,
                    cli::OutputFormat::Csv => query::Format::Csv,
                    cli::OutputFormat::Json => query::Format::Json,
                },
            };
            query::run(&opts).await
        }
        Command::Approve(args) => {
            let opts = approve::ApproveOptions {
                accept: args.accept,
                reason: args.reason,
                by: args.by,
            };
            approve::run(&artifacts, &opts).await
        }
        Command::Load(args) => {
            let opts = load::LoadOptions {
                artifacts,
                conn: conn(&args.db)?,
                apply: args.apply,
                dependents: match args.dependents {
                    cli::DependentsPolicy::Refuse => load::DependentsPolicy::Refuse,
                    cli::DependentsPolicy::Delete => load::DependentsPolicy::Delete,
                    cli::DependentsPolicy::Keep => load::DependentsPolicy::Keep,
                },
                timeouts: timeouts(&args.timeouts),
            };
            load::run(&opts).await
        }
        Command::Rollback(args) => {
            let opts = load::rollback::RollbackOptions {
                artifacts,
                conn: conn(&args.db)?,
                run_id: args.run_id,
                apply: args.apply,
                remove_created_users: args.remove_created_users,
                timeouts: timeouts(&args.timeouts),
            };
            load::rollback::run(&opts).await
        }
        Command::Status(args) => {
            let opts = load::status::StatusOptions {
                artifacts,
                conn: conn(&args.db).ok(),
            };
            load::status::run(&opts).await
        }
        Command::Review => review::run(&review::ReviewOptions {
            artifacts,
            pipeline,
        })
        .await
        .map(|_| ()),
        Command::Explain(args) => {
            review::explain::run(&review::explain::ExplainOptions {
                artifacts,
                pipeline,
                email: args.email,
                key: args.key,
                format: match args.format {
                    cli::ExplainFormat::Text => review::explain::ExplainFormat::Text,
                    cli::ExplainFormat::Json => review::explain::ExplainFormat::Json,
                },
            })
            .await
        }
        Command::DevDb(cmd) => {
            let action = match cmd {
                cli::DevDbCommand::Start(a) => tools::devdb::Action::Start(a.dir),
                cli::DevDbCommand::Stop(a) => tools::devdb::Action::Stop(a.dir),
                cli::DevDbCommand::Url(a) => tools::devdb::Action::Url(a.dir),
            };
            tools::devdb::command(action).await
        }
        Command::DemoData(args) => {
            let opts = tools::demo_data::DemoOptions {
                scale: args.scale,
                seed: args.seed,
                legacy: args.legacy,
            };
            tools::demo_data::command(&conn(&args.db)?, &opts, &args.ground_truth).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tokio::runtime::RuntimeFlavor;

    fn flavor(args: &[&str]) -> RuntimeFlavor {
        let cli = Cli::try_parse_from(args).expect("arguments parse");
        runtime_for(&cli.command)
            .expect("runtime builds")
            .handle()
            .runtime_flavor()
    }

    #[test]
    fn the_extract_runs_on_one_thread_and_the_transform_and_load_on_all_cores() {
        assert_eq!(
            flavor(&["cleanmig", "extract"]),
            RuntimeFlavor::CurrentThread
        );
        assert_eq!(
            flavor(&["cleanmig", "transform"]),
            RuntimeFlavor::MultiThread
        );
        assert_eq!(flavor(&["cleanmig", "load"]), RuntimeFlavor::MultiThread);
    }
}
