//! Rollback: restore the destination tables from a load's backup.

use crate::cli::{GlobalArgs, RollbackArgs};
use anyhow::{bail, Result};

pub async fn run(_global: &GlobalArgs, _args: &RollbackArgs) -> Result<()> {
    bail!("rollback is not implemented yet")
}
