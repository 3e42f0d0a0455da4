//! Load: copy the approved artifacts into Postgres and reconcile in one transaction.

pub mod rollback;
pub mod status;

use crate::cli::{GlobalArgs, LoadArgs};
use anyhow::{bail, Result};

pub async fn run(_global: &GlobalArgs, _args: &LoadArgs) -> Result<()> {
    bail!("load is not implemented yet")
}
