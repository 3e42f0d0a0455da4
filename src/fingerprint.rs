//! Fingerprints of tables, so that a later stage can tell whether a table changed since extraction.
//!
//! A fingerprint is computed by Postgres in one pass and does not depend on row order:
//! the row count and the sum of a 64-bit hash of each row (`hash_record_extended`). Sources are fingerprinted
//! on their whole row (any change counts); destination tables on their keys only, because the
//! live app keeps updating columns it owns (progress, activity times) and that is not drift.
//!
//! The extract computes the fingerprints of columns of uuid, integer and (on a UTF-8 server)
//! text types itself, from the rows it copies ([`RowSum`]: Postgres's hash functions for those
//! types, reproduced); every other fingerprint, and every one a later stage takes, is Postgres's.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a fingerprint covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Every column of every row.
    WholeRow,
    /// The set of keys (rows gained or lost).
    Keys,
}

/// The fingerprint of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFingerprint {
    pub coverage: Coverage,
    pub rows: u64,
    /// sha256 of `rows:hashsum`, hex.
    pub digest: String,
}

/// Types whose values Postgres can hash directly (others are hashed as their text).
pub fn hashable(typname: &str) -> bool {
    let base = typname.strip_prefix('_').unwrap_or(typname);
    matches!(
        base,
        "text"
            | "varchar"
            | "bpchar"
            | "name"
            | "int2"
            | "int4"
            | "int8"
            | "bool"
            | "uuid"
            | "numeric"
            | "timestamptz"
            | "timestamp"
            | "date"
            | "jsonb"
            | "bytea"
            | "float4"
            | "float8"
            | "char"
            | "oid"
    )
}

/// The record hashed per row: the chosen columns of the row aliased `alias`, in table order.
pub fn row_expression(alias: &str, columns: &[crate::pg_arrow::PgColumn]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let ident = format!("{alias}.{}", crate::sql::ident(&c.name));
            if hashable(&c.typname) {
                ident
            } else {
                format!("{ident}::text")
            }
        })
        .collect();
    format!("ROW({})", parts.join(", "))
}

/// The 64-bit hash of one row (alias `t`) over the chosen columns: the per-row term of a
/// fingerprint, and the row hash an extract stores for the load ([`crate::artifacts::RowHashes`]).
pub fn row_hash(columns: &[crate::pg_arrow::PgColumn]) -> String {
    format!("hash_record_extended({}, 0)", row_expression("t", columns))
}

/// Fingerprint `qualified_table` (already quoted) on the given connection or transaction.
/// `hash_record_extended` over the chosen columns costs about as much as reading the table
/// once, a fraction of hashing each row's text.
pub async fn compute(
    client: &impl tokio_postgres::GenericClient,
    qualified_table: &str,
    coverage: Coverage,
    key_columns: &[String],
) -> Result<TableFingerprint> {
    let columns = crate::pg_arrow::table_columns(client, qualified_table).await?;
    let chosen = chosen_columns(&columns, qualified_table, coverage, key_columns)?;
    compute_over(client, qualified_table, coverage, &chosen).await
}

/// One table for [`compute_all`]: its quoted, qualified name, what its fingerprint covers and,
/// for [`Coverage::Keys`], its key columns.
pub struct Wanted<'a> {
    pub qualified: &'a str,
    pub coverage: Coverage,
    pub key_columns: &'a [String],
}

/// [`compute`] for several tables, in the order given, in few round trips: one reads every
/// table's columns, and the fingerprints are asked all at once (tokio-postgres pipelines them on
/// the one connection; the server computes them one after another).
pub async fn compute_all(
    client: &impl tokio_postgres::GenericClient,
    wanted: &[Wanted<'_>],
) -> Result<Vec<TableFingerprint>> {
    let names: Vec<String> = wanted.iter().map(|w| w.qualified.to_string()).collect();
    let columns = crate::pg_arrow::tables_columns(client, &names).await?;
    let mut chosen = Vec::with_capacity(wanted.len());
    for (w, columns) in wanted.iter().zip(columns) {
        let columns = columns.with_context(|| {
            format!("cannot read the columns of {}: no such table", w.qualified)
        })?;
        chosen.push(chosen_columns(
            &columns,
            w.qualified,
            w.coverage,
            w.key_columns,
        )?);
    }
    crate::pg::pipelined(
        wanted
            .iter()
            .zip(&chosen)
            .map(|(w, chosen)| compute_over(client, w.qualified, w.coverage, chosen)),
    )
    .await
}

/// The columns a fingerprint of `coverage` hashes: all of `columns`, or the key columns in the
/// order given (an error names a key the table lacks).
pub fn chosen_columns(
    columns: &[crate::pg_arrow::PgColumn],
    qualified_table: &str,
    coverage: Coverage,
    key_columns: &[String],
) -> Result<Vec<crate::pg_arrow::PgColumn>> {
    match coverage {
        Coverage::WholeRow => Ok(columns.to_vec()),
        Coverage::Keys => key_columns
            .iter()
            .map(|key| {
                columns
                    .iter()
                    .find(|c| &c.name == key)
                    .cloned()
                    .with_context(|| {
                        format!("{qualified_table} has no column {key} to fingerprint")
                    })
            })
            .collect(),
    }
}

/// [`compute`] over columns already read from the catalogue, in the order given.
pub async fn compute_over(
    client: &impl tokio_postgres::GenericClient,
    qualified_table: &str,
    coverage: Coverage,
    chosen: &[crate::pg_arrow::PgColumn],
) -> Result<TableFingerprint> {
    // `sum(bigint)` is already an exact `numeric` (Postgres accumulates it in 128 bits): the
    // same digest as summing each hash cast to `numeric`, without a numeric per row (about 15%
    // of a source's fingerprint, measured at scale 100).
    let sql = format!(
        "SELECT count(*)::int8, coalesce(sum({}), 0)::text \
         FROM {qualified_table} t",
        row_hash(chosen)
    );
    // Unnamed: `cleanmig status` fingerprints outside a transaction ([`crate::pg`]).
    let row = client
        .query_typed_one(&sql, &[])
        .await
        .with_context(|| format!("cannot fingerprint {qualified_table}"))?;
    let rows: i64 = row.get(0);
    let sum: String = row.get(1);
    Ok(TableFingerprint {
        coverage,
        rows: rows as u64,
        digest: hex::encode(Sha256::digest(format!("{rows}:{sum}").as_bytes())),
    })
}

/// A fingerprint computed by the client from the rows it copies, over columns whose Postgres
/// hash it reproduces: `uuid`, `int2`, `int4`, `int8`, and `text` and `varchar` when the server
/// encodes text as UTF-8 (the bytes the client receives are then the bytes Postgres hashes) and
/// the column's collation is deterministic. The same digest as [`compute_over`], without the
/// server reading the table a second time.
#[derive(Debug, Clone)]
pub struct RowSum {
    coverage: Coverage,
    /// Each hashed column's position in the copied rows, its type, and whether it is copied as
    /// its text (a source's columns are) rather than as itself.
    columns: Vec<(usize, ColumnType, bool)>,
    rows: u64,
    /// The exact sum of the signed row hashes, as `sum(bigint)` keeps it.
    sum: i128,
}

/// A column type whose element hash in `hash_record_extended` [`RowSum`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    Uuid,
    Int2,
    Int4,
    Int8,
    Text,
}

impl ColumnType {
    /// `utf8`: whether the server's encoding is UTF-8.
    fn of(column: &crate::pg_arrow::PgColumn, utf8: bool) -> Option<Self> {
        Some(match column.typname.as_str() {
            "uuid" => ColumnType::Uuid,
            "int2" => ColumnType::Int2,
            "int4" => ColumnType::Int4,
            "int8" => ColumnType::Int8,
            "text" | "varchar" if utf8 && column.collation_deterministic => ColumnType::Text,
            _ => return None,
        })
    }

    fn arrow_type(self) -> arrow::datatypes::DataType {
        use arrow::datatypes::DataType;
        match self {
            ColumnType::Uuid | ColumnType::Text => DataType::Utf8,
            ColumnType::Int2 => DataType::Int16,
            ColumnType::Int4 => DataType::Int32,
            ColumnType::Int8 => DataType::Int64,
        }
    }
}

impl RowSum {
    /// Whether the client computes the fingerprint over `chosen` (the hashed columns; `utf8`:
    /// whether the server's encoding is UTF-8): every one of a type whose hash it reproduces.
    pub fn covers(chosen: &[crate::pg_arrow::PgColumn], utf8: bool) -> bool {
        !chosen.is_empty() && chosen.iter().all(|c| ColumnType::of(c, utf8).is_some())
    }

    /// For `chosen` (the hashed columns, in fingerprint order; [`RowSum::covers`] them), copied
    /// at `positions` of `schema`, the copied rows of `table`: each as itself or as its text.
    pub fn new(
        table: &str,
        coverage: Coverage,
        chosen: &[crate::pg_arrow::PgColumn],
        positions: &[usize],
        utf8: bool,
        schema: &arrow::datatypes::Schema,
    ) -> Result<Self> {
        let mut columns = Vec::with_capacity(chosen.len());
        for (c, &position) in chosen.iter().zip(positions) {
            let ty = ColumnType::of(c, utf8)
                .with_context(|| format!("{table}: column {} is a {}", c.name, c.typname))?;
            let field = schema
                .fields()
                .get(position)
                .with_context(|| format!("{table}: column {} is not copied", c.name))?;
            let as_text = field.data_type() == &arrow::datatypes::DataType::Utf8;
            if !as_text && field.data_type() != &ty.arrow_type() {
                anyhow::bail!(
                    "{table}: column {} is copied as {} ({}), not {}",
                    c.name,
                    field.data_type(),
                    field.name(),
                    ty.arrow_type()
                );
            }
            columns.push((position, ty, as_text));
        }
        if columns.len() != chosen.len() {
            anyhow::bail!(
                "{table}: {} columns to hash, {} placed",
                chosen.len(),
                columns.len()
            );
        }
        Ok(Self {
            coverage,
            columns,
            rows: 0,
            sum: 0,
        })
    }

    /// Add a batch of copied rows.
    pub fn add(&mut self, batch: &arrow::record_batch::RecordBatch) -> Result<()> {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{Int16Type, Int32Type, Int64Type};
        let mut hashes = vec![0u64; batch.num_rows()];
        for &(index, ty, as_text) in &self.columns {
            let column = batch.column(index);
            let element = |row: usize| -> Result<u64> {
                if as_text {
                    return element_hash(ty, column.as_string::<i32>().value(row));
                }
                Ok(match ty {
                    ColumnType::Int2 => {
                        hash_uint32(column.as_primitive::<Int16Type>().value(row) as i32 as u32)
                    }
                    ColumnType::Int4 => {
                        hash_uint32(column.as_primitive::<Int32Type>().value(row) as u32)
                    }
                    ColumnType::Int8 => hash_int8(column.as_primitive::<Int64Type>().value(row)),
                    ColumnType::Uuid | ColumnType::Text => {
                        unreachable!("copied as text, checked in RowSum::new")
                    }
                })
            };
            for (row, hash) in hashes.iter_mut().enumerate() {
                let element = if column.is_null(row) {
                    0
                } else {
                    element(row)?
                };
                // hash_record_extended: result = (result << 5) - result + element_hash
                *hash = hash.wrapping_mul(31).wrapping_add(element);
            }
        }
        self.rows += hashes.len() as u64;
        self.sum += hashes.iter().map(|&h| h as i64 as i128).sum::<i128>();
        Ok(())
    }

    /// The fingerprint of the rows added, as [`compute_over`] gives it.
    pub fn finish(&self) -> TableFingerprint {
        TableFingerprint {
            coverage: self.coverage,
            rows: self.rows,
            digest: hex::encode(Sha256::digest(
                format!("{}:{}", self.rows, self.sum).as_bytes(),
            )),
        }
    }
}

/// The element hash of a value of type `ty` given as its text (Postgres's output form).
fn element_hash(ty: ColumnType, text: &str) -> Result<u64> {
    let not_one = || format!("`{text}` is not a {ty:?} in Postgres's output form");
    Ok(match ty {
        ColumnType::Uuid => hash_uuid(text).with_context(not_one)?,
        ColumnType::Int2 => hash_uint32(text.parse::<i16>().with_context(not_one)? as i32 as u32),
        ColumnType::Int4 => hash_uint32(text.parse::<i32>().with_context(not_one)? as u32),
        ColumnType::Int8 => hash_int8(text.parse::<i64>().with_context(not_one)?),
        ColumnType::Text => hash_bytes(text.as_bytes()),
    })
}

/// `hash_record_extended(ROW(...), 0)` of one row as [`RowSum`] computes it, for a test against
/// Postgres: each value of type `uuid`, `int2`, `int4`, `int8` or `text`, as its text, or `None`.
#[cfg(test)]
fn row_hash_of(values: &[(&str, Option<&str>)]) -> Result<i64> {
    let mut hash = 0u64;
    for (typname, value) in values {
        let ty = match *typname {
            "uuid" => ColumnType::Uuid,
            "int2" => ColumnType::Int2,
            "int4" => ColumnType::Int4,
            "int8" => ColumnType::Int8,
            "text" => ColumnType::Text,
            other => anyhow::bail!("{other} is not a type hashed by the client"),
        };
        let element = match value {
            None => 0,
            Some(v) => element_hash(ty, v)?,
        };
        hash = hash.wrapping_mul(31).wrapping_add(element);
    }
    Ok(hash as i64)
}

/// `uuid_hash_extended(u, 0)`: the 16 bytes through `hash_bytes_extended`. `None` for text
/// that is not a uuid in Postgres's output form (`8-4-4-4-12` hex digits).
fn hash_uuid(text: &str) -> Option<u64> {
    let t = text.as_bytes();
    if t.len() != 36 || [8, 13, 18, 23].iter().any(|&i| t[i] != b'-') {
        return None;
    }
    let mut digits = t
        .iter()
        .filter(|&&b| b != b'-')
        .map(|&b| (b as char).to_digit(16));
    let mut bytes = [0u8; 16];
    for byte in &mut bytes {
        let (high, low) = (digits.next()??, digits.next()??);
        *byte = (high * 16 + low) as u8;
    }
    Some(hash_bytes(&bytes))
}

/// `hashint8extended(v, 0)`: the high half folded into the low one, then hashed as 32 bits.
fn hash_int8(v: i64) -> u64 {
    let (lo, hi) = (v as u32, (v >> 32) as u32);
    hash_uint32(if v >= 0 { lo ^ hi } else { lo ^ !hi })
}

fn rot(x: u32, k: u32) -> u32 {
    x.rotate_left(k)
}

/// lookup3's `mix` (Postgres's `src/common/hashfn.c`).
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= rot(*c, 4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= rot(*a, 6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= rot(*b, 8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= rot(*c, 16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= rot(*a, 19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= rot(*b, 4);
    *b = b.wrapping_add(*a);
}

/// lookup3's `final`.
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(rot(*b, 14));
    *a ^= *c;
    *a = a.wrapping_sub(rot(*c, 11));
    *b ^= *a;
    *b = b.wrapping_sub(rot(*a, 25));
    *c ^= *b;
    *c = c.wrapping_sub(rot(*b, 16));
    *a ^= *c;
    *a = a.wrapping_sub(rot(*c, 4));
    *b ^= *a;
    *b = b.wrapping_sub(rot(*a, 14));
    *c ^= *b;
    *c = c.wrapping_sub(rot(*b, 24));
}

/// `hash_bytes_extended(k, len, 0)` on a little-endian machine.
fn hash_bytes(k: &[u8]) -> u64 {
    let init = 0x9e37_79b9u32
        .wrapping_add(k.len() as u32)
        .wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (init, init, init);
    let word = |w: &[u8]| -> u32 {
        w.iter().enumerate().fold(0u32, |acc, (i, &byte)| {
            acc.wrapping_add((byte as u32) << (8 * i))
        })
    };
    let mut blocks = k.chunks_exact(12);
    for block in &mut blocks {
        let le =
            |i: usize| u32::from_le_bytes([block[i], block[i + 1], block[i + 2], block[i + 3]]);
        a = a.wrapping_add(le(0));
        b = b.wrapping_add(le(4));
        c = c.wrapping_add(le(8));
        mix(&mut a, &mut b, &mut c);
    }
    let rest = blocks.remainder();
    // The last bytes: c's lowest byte is left for the length.
    let n = rest.len();
    if n > 8 {
        c = c.wrapping_add(word(&rest[8..]) << 8);
    }
    if n > 4 {
        b = b.wrapping_add(word(&rest[4..n.min(8)]));
    }
    if n > 0 {
        a = a.wrapping_add(word(&rest[..n.min(4)]));
    }
    final_mix(&mut a, &mut b, &mut c);
    ((b as u64) << 32) | c as u64
}

/// `hash_uint32_extended(k, 0)`.
fn hash_uint32(k: u32) -> u64 {
    let init = 0x9e37_79b9u32.wrapping_add(4).wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (init, init, init);
    a = a.wrapping_add(k);
    final_mix(&mut a, &mut b, &mut c);
    ((b as u64) << 32) | c as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_hashes_are_postgres_hash_record_extended() {
        // SELECT hash_record_extended(ROW(...), 0) on Postgres 15.
        type Row<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: [(Row, i64); 11] = [
            (&[("text", Some("Peñaflor"))], -6183932010947874288),
            (&[("text", Some(""))], -6939563903564495251),
            (
                &[(
                    "text",
                    Some("a longer text with more than twelve bytes, ünïcödé"),
                )],
                -563823771739004147,
            ),
            (
                &[
                    ("text", None),
                    ("text", Some("x")),
                    ("text", Some("abcdefghijkl")),
                    ("text", Some("abcdefghijklm")),
                ],
                819197070335295685,
            ),
            (
                &[("uuid", Some("00000000-0000-0000-0000-000000000000"))],
                -6859010066814654381,
            ),
            (
                &[("uuid", Some("8dbcc8bd-f2fe-40c8-9727-dbd59937db40"))],
                -3825900620900395536,
            ),
            (&[("int4", Some("1"))], -3670598878359251130),
            (&[("int8", Some("-5"))], -9082176226831438310),
            (&[("int8", Some("5000000000"))], -5263616605311196344),
            (&[("int2", Some("-3"))], -7676986921448237951),
            (
                &[
                    ("int4", Some("7")),
                    ("uuid", Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")),
                    ("int8", None),
                ],
                6184670732042951130,
            ),
        ];
        for (row, expected) in cases {
            assert_eq!(row_hash_of(row).unwrap(), expected, "{row:?}");
        }
    }

    #[test]
    fn a_uuid_is_read_in_postgres_output_form_only() {
        assert!(hash_uuid("8dbcc8bd-f2fe-40c8-9727-dbd59937db40").is_some());
        for not_one in [
            "8dbcc8bdf2fe40c89727dbd59937db40",
            "8dbcc8bd-f2fe-40c8-9727-dbd59937db4",
            "8dbcc8bd-f2fe-40c8-9727-dbd59937db4g",
            "8dbcc8b-df2fe-40c8-9727-dbd59937db40",
            "8dbcc8bd-f2fe-40c8-9727-dbd59937db-0",
        ] {
            assert_eq!(hash_uuid(not_one), None, "{not_one}");
        }
    }
}
