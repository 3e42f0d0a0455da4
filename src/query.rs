//! Query: SQL over every artifact, for analysts.

use crate::cli::{GlobalArgs, QueryArgs};
use anyhow::{bail, Result};

pub async fn run(_global: &GlobalArgs, _args: &QueryArgs) -> Result<()> {
    bail!("query is not implemented yet")
}
