//! Tools beside the pipeline: a throwaway Postgres and the demo-data generator.

pub mod demo_data;
pub mod devdb;
