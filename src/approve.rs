//! Approve: freeze exactly what was reviewed into artifacts/approved.json.

use crate::cli::{ApproveArgs, GlobalArgs};
use anyhow::{bail, Result};

pub async fn run(_global: &GlobalArgs, _args: &ApproveArgs) -> Result<()> {
    bail!("approve is not implemented yet")
}
