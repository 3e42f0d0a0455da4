//! Status: artifacts, approval, source drift, last runs.

use crate::cli::{GlobalArgs, StatusArgs};
use anyhow::{bail, Result};

pub async fn run(_global: &GlobalArgs, _args: &StatusArgs) -> Result<()> {
    bail!("status is not implemented yet")
}
