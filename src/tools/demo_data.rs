//! Realistic synthetic data in a Supabase-shaped database.

use crate::cli::DemoDataArgs;
use anyhow::{bail, Result};

pub async fn command(_args: &DemoDataArgs) -> Result<()> {
    bail!("demo-data is not implemented yet")
}
