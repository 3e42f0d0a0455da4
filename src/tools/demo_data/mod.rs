//! Realistic synthetic data in a Supabase-shaped database: `cleanmig demo-data`.
//!
//! Creates the schema in an empty database, fills the source tables (`xendit`, `systemeio`) and
//! the business tables (auth users, profiles, transactions, enrollments and what points at them)
//! with the figures of the original plan at `--scale 1`, plants every kind of mess real data has,
//! and writes a ground truth of what a correct migration must produce.
//!
//! Deterministic: everything is drawn from `--seed` through counter-based random streams
//! ([`rng`]), so the same seed gives the same rows in both source shapes. Rows stream into
//! Postgres with `COPY ... FROM STDIN` ([`copy`]); only the customers and paid payments are held
//! in memory ([`model`]).

mod business;
mod copy;
mod model;
mod names;
mod rng;
mod sources;
mod truth;

use crate::artifacts::{human_bytes, human_count};
use crate::connect::ConnInfo;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tokio_postgres::Client;

pub use model::Plan;
pub use truth::GroundTruth;

const SUPABASE_AUTH_SQL: &str = include_str!("../../../tests/fixtures/schema/supabase_auth.sql");
const SUPABASE_SQL: &str = include_str!("../../../tests/fixtures/schema/supabase.sql");
const SOURCES_CANONICAL_SQL: &str =
    include_str!("../../../tests/fixtures/schema/sources_canonical.sql");
const SOURCES_LEGACY_SQL: &str = include_str!("../../../tests/fixtures/schema/sources_legacy.sql");

/// The slug and title of the Papers to Profits course in `courses`.
pub const P2P_COURSE_SLUG: &str = "papers-to-profits";
pub const P2P_COURSE_TITLE: &str = "Papers to Profits";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// 1.0 gives the plan's row counts.
    pub scale: f64,
    pub seed: u64,
    /// Source tables in their legacy CSV-export shape.
    pub legacy: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            scale: 1.0,
            seed: 42,
            legacy: false,
        }
    }
}

/// Counts gathered while rendering rows (planted mess that depends on random draws).
#[derive(Debug, Clone, Default)]
pub struct Tally(pub BTreeMap<String, u64>);

impl Tally {
    pub fn add(&mut self, key: &str, n: u64) {
        *self.0.entry(key.to_string()).or_insert(0) += n;
    }
}

pub async fn command(conn: &ConnInfo, opts: &DemoOptions, ground_truth: &Path) -> Result<()> {
    tracing::info!("demo-data into {conn} (settings from {})", conn.source);
    let client = conn.connect().await?;
    let started = Instant::now();
    let truth = generate(&client, opts).await?;
    truth.write(ground_truth)?;
    let bytes = std::fs::metadata(ground_truth)
        .map(|m| m.len())
        .unwrap_or(0);
    let counts = truth.counts();
    tracing::info!(
        "demo-data ground truth: {} customers, {} transactions, {} enrollments, {} rows to delete -> {} ({})",
        human_count(counts["customers"]),
        human_count(counts["transactions"]),
        human_count(counts["enrollments"]),
        human_count(counts["profiles_to_delete"] + counts["transactions_to_delete"] + counts["enrollments_to_delete"]),
        ground_truth.display(),
        human_bytes(bytes),
    );
    tracing::info!("demo-data done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Create the schema in an empty database and fill it; returns the ground truth (not yet written).
pub async fn generate(client: &Client, opts: &DemoOptions) -> Result<GroundTruth> {
    let plan = Plan::new(opts.scale)?;
    let model = model::Model::build(opts.seed, plan)?;

    let taken: bool = client
        .query_one(
            "SELECT to_regclass('public.xendit') IS NOT NULL OR to_regclass('public.systemeio') IS NOT NULL \
             OR to_regclass('public.unified_profiles') IS NOT NULL OR to_regnamespace('auth') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if taken {
        bail!(
            "the target database already has cleanmig's tables (auth, unified_profiles, xendit or systemeio); \
             demo-data fills an empty database only: create a new one (or `cleanmig dev-db start`)"
        );
    }

    let mut tally = Tally::default();
    let mut rows = BTreeMap::new();
    client.batch_execute("BEGIN").await?;
    let result = async {
        client
            .batch_execute(SUPABASE_AUTH_SQL)
            .await
            .context("cannot create the Supabase-shaped auth schema")?;
        client
            .batch_execute(SUPABASE_SQL)
            .await
            .context("cannot create the Supabase-shaped schema")?;
        client
            .batch_execute(if opts.legacy {
                SOURCES_LEGACY_SQL
            } else {
                SOURCES_CANONICAL_SQL
            })
            .await
            .context("cannot create the source tables")?;
        let mut done = |table: &str, n: u64, t: Instant| {
            tracing::info!(
                "demo-data {table}: {} rows, {:.2} s",
                human_count(n),
                t.elapsed().as_secs_f64()
            );
            rows.insert(table.to_string(), n);
        };
        let t = Instant::now();
        done("courses", business::write_courses(client, &model).await?, t);
        let t = Instant::now();
        let (users, identities) = business::write_auth(client, &model, &mut tally).await?;
        done("auth.users", users, t);
        done("auth.identities", identities, t);
        let t = Instant::now();
        done(
            "unified_profiles",
            business::write_profiles(client, &model).await?,
            t,
        );
        let t = Instant::now();
        done(
            "transactions",
            business::write_transactions(client, &model).await?,
            t,
        );
        let t = Instant::now();
        let (enrollments, lessons) =
            business::write_enrollments(client, &model, &mut tally).await?;
        done("enrollments", enrollments, t);
        done("lesson_progress", lessons, t);
        let t = Instant::now();
        done(
            "user_tags",
            business::write_user_tags(client, &model, &mut tally).await?,
            t,
        );
        let t = Instant::now();
        let (leads, ebooks) = business::write_leads(client, &model, &mut tally).await?;
        done("purchase_leads", leads, t);
        done("ebook_contacts", ebooks, t);
        let t = Instant::now();
        done(
            "xendit",
            sources::write_xendit(client, &model, opts.legacy, &mut tally).await?,
            t,
        );
        let t = Instant::now();
        done(
            "systemeio",
            sources::write_systemeio(client, &model, opts.legacy, &mut tally).await?,
            t,
        );
        anyhow::Ok(())
    }
    .await;
    // No named statement outlives the transaction on a pooler's server connection (`crate::pg`).
    client.clear_type_cache();
    match result {
        Ok(()) => client.batch_execute("DEALLOCATE ALL; COMMIT").await?,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    }
    client.batch_execute("ANALYZE").await?;
    Ok(GroundTruth {
        model,
        legacy: opts.legacy,
        source_rows: rows,
        tally,
    })
}
