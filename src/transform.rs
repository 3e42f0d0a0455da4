//! Transform: run the SQL in `pipeline/` over the extract with DataFusion; no database connection.

use crate::cli::{GlobalArgs, TransformArgs};
use anyhow::{bail, Result};

pub async fn run(_global: &GlobalArgs, _args: &TransformArgs) -> Result<()> {
    bail!("transform is not implemented yet")
}
