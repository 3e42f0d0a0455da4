//! Extract: stream the sources and the current destination tables into Parquet.

use crate::cli::{ExtractArgs, GlobalArgs};
use anyhow::{bail, Result};

pub async fn run(_global: &GlobalArgs, _args: &ExtractArgs, _quiet: bool) -> Result<()> {
    bail!("extract is not implemented yet")
}
