//! The one place that maps Postgres types to Arrow types and back.

/// Field metadata key: the Postgres type a column came from.
pub const PG_TYPE_KEY: &str = "cleanmig.pg_type";
/// Field metadata key: the column's original name in the source table.
pub const SOURCE_NAME_KEY: &str = "cleanmig.source_name";
