//! The one place that maps Postgres types to Arrow types and back.
//!
//! Extract decodes `COPY ... TO STDOUT (FORMAT binary)` straight into Arrow builders; load
//! encodes Arrow batches into `COPY ... FROM STDIN (FORMAT binary)`. Types:
//!
//! | Postgres | Arrow |
//! |---|---|
//! | `bool` | Boolean |
//! | `int2`, `int4`, `int8` | Int16, Int32, Int64 |
//! | `float4`, `float8` | Float32, Float64 |
//! | `numeric` | Decimal128(38, s), s = declared or largest scale found; Utf8 where it does not fit |
//! | `text`, `varchar`, `bpchar`, `name` | Utf8 |
//! | `uuid` | Utf8, canonical lowercase text |
//! | `json`, `jsonb` | Utf8, JSON text |
//! | `timestamptz` | Timestamp(Microsecond, "UTC") |
//! | `timestamp` | Timestamp(Microsecond, none) |
//! | `date` | Date32 |
//! | `bytea` | Binary |
//! | any array | List(Utf8), elements as Postgres prints them |
//! | anything else | Utf8, as Postgres prints it (`::text`) |
//!
//! Every field carries its Postgres type in the metadata key [`PG_TYPE_KEY`].

use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array,
    Date32Builder, Decimal128Builder, Float32Array, Float32Builder, Float64Array, Float64Builder,
    Int16Array, Int16Builder, Int32Array, Int32Builder, Int64Array, Int64Builder, ListArray,
    ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{pin_mut, SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;

/// Field metadata key: the Postgres type a column came from.
pub const PG_TYPE_KEY: &str = "cleanmig.pg_type";
/// Field metadata key: the column's original name in the source table.
pub const SOURCE_NAME_KEY: &str = "cleanmig.source_name";

/// Microseconds between 1970-01-01 and Postgres' epoch 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_OFFSET_DAYS: i32 = 10_957;
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// How one column travels between Postgres and Arrow.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Decimal128(38, scale).
    Decimal {
        scale: i8,
    },
    /// Text on the wire (text, varchar, json and anything cast with `::text`).
    Text,
    /// jsonb on the wire (a version byte, then text).
    Jsonb,
    Uuid,
    Timestamptz,
    Timestamp,
    Date,
    Bytea,
    /// An array cast to `text[]`.
    TextList,
}

impl Kind {
    pub fn arrow_type(&self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int16 => DataType::Int16,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float32 => DataType::Float32,
            Kind::Float64 => DataType::Float64,
            Kind::Decimal { scale } => DataType::Decimal128(38, *scale),
            Kind::Text | Kind::Jsonb | Kind::Uuid => DataType::Utf8,
            Kind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Date => DataType::Date32,
            Kind::Bytea => DataType::Binary,
            Kind::TextList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }
}

/// A column as Postgres describes it (from `pg_attribute`).
#[derive(Debug, Clone)]
pub struct PgColumn {
    pub name: String,
    /// `format_type()` output, e.g. `numeric(12,2)`, `timestamp with time zone`, `text[]`.
    pub type_name: String,
    /// `pg_type.typname`, e.g. `numeric`, `timestamptz`, `_text`.
    pub typname: String,
    /// `pg_type.typcategory` (`A` for arrays).
    pub category: char,
    /// Declared typmod (-1 when none).
    pub typmod: i32,
    pub not_null: bool,
    pub generated: bool,
    /// For an array column, its element type's oid and `pg_type.typname` (0 and empty
    /// otherwise).
    pub elem_oid: u32,
    pub elem_typname: String,
    /// Whether the column's collation is deterministic (true for types without one): its
    /// values then hash as their bytes ([`crate::fingerprint::RowSum`]).
    pub collation_deterministic: bool,
}

/// Columns of a table, in order, with their types (an unnamed statement: `cleanmig status`
/// reads them outside a transaction, see [`crate::pg`]).
pub async fn table_columns(
    client: &impl tokio_postgres::GenericClient,
    qualified_table: &str,
) -> Result<Vec<PgColumn>> {
    let mut found = tables_columns(client, &[qualified_table.to_string()]).await?;
    found
        .pop()
        .flatten()
        .with_context(|| format!("cannot read the columns of {qualified_table}: no such table"))
}

/// The columns of each of `qualified_tables`, in one round trip: `None` for a table that does
/// not exist. In the order given.
pub async fn tables_columns(
    client: &impl tokio_postgres::GenericClient,
    qualified_tables: &[String],
) -> Result<Vec<Option<Vec<PgColumn>>>> {
    let rows = crate::pg::query(
        client,
        "SELECT u.n::int4, to_regclass(u.t) IS NOT NULL, a.attname::text, \
                format_type(a.atttypid, a.atttypmod), t.typname::text, t.typcategory::text, \
                a.atttypmod, a.attnotnull, a.attgenerated <> '', \
                coalesce(e.oid, 0)::oid, coalesce(e.typname::text, ''), \
                coalesce(co.collisdeterministic, true) \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) \
         LEFT JOIN pg_attribute a ON a.attrelid = to_regclass(u.t) AND a.attnum > 0 \
                                 AND NOT a.attisdropped \
         LEFT JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' \
         LEFT JOIN pg_collation co ON co.oid = a.attcollation \
         ORDER BY u.n, a.attnum",
        &[&qualified_tables],
        &[tokio_postgres::types::Type::TEXT_ARRAY],
    )
    .await
    .with_context(|| format!("cannot read the columns of {}", qualified_tables.join(", ")))?;
    let mut out: Vec<Option<Vec<PgColumn>>> = vec![None; qualified_tables.len()];
    for r in &rows {
        let i = r.get::<_, i32>(0) as usize - 1;
        if !r.get::<_, bool>(1) {
            continue;
        }
        let columns = out[i].get_or_insert_with(Vec::new);
        let Some(name) = r.get::<_, Option<String>>(2) else {
            continue; // a table without columns
        };
        columns.push(PgColumn {
            name,
            type_name: r.get(3),
            typname: r.get(4),
            category: r.get::<_, String>(5).chars().next().unwrap_or('U'),
            typmod: r.get(6),
            not_null: r.get(7),
            generated: r.get(8),
            elem_oid: r.get(9),
            elem_typname: r.get(10),
            collation_deterministic: r.get(11),
        });
    }
    Ok(out)
}

/// Declared (precision, scale) of a `numeric(p,s)` typmod.
pub fn numeric_typmod(typmod: i32) -> Option<(u32, i8)> {
    if typmod < 4 {
        return None;
    }
    let t = typmod - 4;
    Some((((t >> 16) & 0xffff) as u32, (t & 0xffff) as i8))
}

/// How a numeric column is extracted, given what is declared or found in the data.
/// `found` is (largest scale, most integer digits, any NaN/Infinity) from [`numeric_profile_sql`].
pub fn numeric_kind(typmod: i32, found: Option<(i32, i32, bool)>) -> Kind {
    if let Some((p, s)) = numeric_typmod(typmod) {
        if p <= 38 && s >= 0 {
            return Kind::Decimal { scale: s };
        }
    }
    match found {
        Some((scale, int_digits, special)) => {
            if !special && (0..=38).contains(&scale) && int_digits + scale <= 38 {
                Kind::Decimal { scale: scale as i8 }
            } else {
                Kind::Text
            }
        }
        None => Kind::Decimal { scale: 0 },
    }
}

/// Whether a column's Arrow type needs [`numeric_profile_sql`] first: a numeric column
/// declared without a precision, or with one DECIMAL(38) cannot hold (`numeric(50,2)`).
pub fn numeric_needs_profile(col: &PgColumn) -> bool {
    col.typname == "numeric"
        && col.category != 'A'
        && !matches!(numeric_typmod(col.typmod), Some((p, s)) if p <= 38 && s >= 0)
}

/// SQL that returns, for each of `columns` (numeric columns of one table) in turn, (largest
/// scale, most integer digits, any NaN/Infinity): three values per column, in one scan.
pub fn numeric_profile_sql(qualified_table: &str, columns: &[&str]) -> String {
    let items: Vec<String> = columns
        .iter()
        .map(|column| {
            let c = crate::sql::ident(column);
            format!(
                "coalesce(max(scale({c})) FILTER (WHERE {c} NOT IN ('NaN'::numeric, 'Infinity'::numeric, '-Infinity'::numeric)), 0)::int4, \
                 coalesce(max(length(trunc(abs({c}))::text)) FILTER (WHERE {c} NOT IN ('NaN'::numeric, 'Infinity'::numeric, '-Infinity'::numeric)), 1)::int4, \
                 coalesce(bool_or({c} IN ('NaN'::numeric, 'Infinity'::numeric, '-Infinity'::numeric)), false)"
            )
        })
        .collect();
    format!("SELECT {} FROM {qualified_table}", items.join(", "))
}

/// The kind a column is extracted as (numeric columns need [`numeric_kind`] instead), and the
/// select expression that produces it.
pub fn extract_kind(col: &PgColumn) -> (Kind, String) {
    let ident = crate::sql::ident(&col.name);
    if col.category == 'A' {
        return (Kind::TextList, format!("{ident}::text[]"));
    }
    let kind = match col.typname.as_str() {
        "bool" => Kind::Bool,
        "int2" => Kind::Int16,
        "int4" => Kind::Int32,
        "int8" => Kind::Int64,
        "float4" => Kind::Float32,
        "float8" => Kind::Float64,
        "text" | "varchar" | "bpchar" | "name" | "json" => Kind::Text,
        "jsonb" => Kind::Jsonb,
        "uuid" => Kind::Uuid,
        "timestamptz" => Kind::Timestamptz,
        "timestamp" => Kind::Timestamp,
        "date" => Kind::Date,
        "bytea" => Kind::Bytea,
        _ => return (Kind::Text, format!("{ident}::text")),
    };
    let expr = if col.typname == "bpchar" || col.typname == "name" || col.typname == "json" {
        format!("{ident}::text")
    } else {
        ident
    };
    (kind, expr)
}

/// The kind of a column declared with a `format_type()` name (`integer`,
/// `timestamp with time zone`), for columns that exist only in the catalogue.
pub fn kind_of_type_name(type_name: &str) -> Option<Kind> {
    Some(match type_name {
        "boolean" => Kind::Bool,
        "smallint" => Kind::Int16,
        "integer" => Kind::Int32,
        "bigint" => Kind::Int64,
        "real" => Kind::Float32,
        "double precision" => Kind::Float64,
        "text" | "character varying" => Kind::Text,
        "jsonb" => Kind::Jsonb,
        "uuid" => Kind::Uuid,
        "timestamp with time zone" => Kind::Timestamptz,
        "timestamp without time zone" => Kind::Timestamp,
        "date" => Kind::Date,
        _ => return None,
    })
}

/// An Arrow field for an extracted column, with its Postgres type in the metadata.
pub fn field(name: &str, kind: &Kind, pg_type: &str, nullable: bool) -> Field {
    let mut meta = HashMap::new();
    meta.insert(PG_TYPE_KEY.to_string(), pg_type.to_string());
    Field::new(name, kind.arrow_type(), nullable).with_metadata(meta)
}

// ---------------------------------------------------------------------------------------------
// Decoding: binary COPY -> Arrow

enum Builder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    /// Text values as bytes, checked as UTF-8 once per batch ([`utf8_column`]): one pass over
    /// the batch's values costs less than a check per value.
    Text(BinaryBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder, bool),
    Date(Date32Builder),
    Bytea(BinaryBuilder),
    TextList(ListBuilder<StringBuilder>),
}

impl Builder {
    fn new(kind: &Kind) -> Self {
        match kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::Int16 => Builder::Int16(Int16Builder::new()),
            Kind::Int32 => Builder::Int32(Int32Builder::new()),
            Kind::Int64 => Builder::Int64(Int64Builder::new()),
            Kind::Float32 => Builder::Float32(Float32Builder::new()),
            Kind::Float64 => Builder::Float64(Float64Builder::new()),
            Kind::Decimal { scale } => Builder::Decimal(
                Decimal128Builder::new().with_data_type(DataType::Decimal128(38, *scale)),
                *scale,
            ),
            Kind::Text => Builder::Text(BinaryBuilder::new()),
            Kind::Jsonb => Builder::Jsonb(StringBuilder::new()),
            Kind::Uuid => Builder::Uuid(StringBuilder::new()),
            Kind::Timestamptz => Builder::Timestamp(TimestampMicrosecondBuilder::new(), true),
            Kind::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new(), false),
            Kind::Date => Builder::Date(Date32Builder::new()),
            Kind::Bytea => Builder::Bytea(BinaryBuilder::new()),
            Kind::TextList => Builder::TextList(ListBuilder::new(StringBuilder::new())),
        }
    }

    fn append(&mut self, value: Option<&[u8]>) -> Result<()> {
        let Some(v) = value else {
            match self {
                Builder::Bool(b) => b.append_null(),
                Builder::Int16(b) => b.append_null(),
                Builder::Int32(b) => b.append_null(),
                Builder::Int64(b) => b.append_null(),
                Builder::Float32(b) => b.append_null(),
                Builder::Float64(b) => b.append_null(),
                Builder::Decimal(b, _) => b.append_null(),
                Builder::Jsonb(b) | Builder::Uuid(b) => b.append_null(),
                Builder::Text(b) => b.append_null(),
                Builder::Timestamp(b, _) => b.append_null(),
                Builder::Date(b) => b.append_null(),
                Builder::Bytea(b) => b.append_null(),
                Builder::TextList(b) => b.append_null(),
            }
            return Ok(());
        };
        match self {
            Builder::Bool(b) => b.append_value(fixed::<1>(v)?[0] != 0),
            Builder::Int16(b) => b.append_value(i16::from_be_bytes(fixed(v)?)),
            Builder::Int32(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
            Builder::Int64(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Builder::Float32(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
            Builder::Float64(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
            Builder::Decimal(b, scale) => b.append_value(decode_numeric(v, *scale)?),
            Builder::Text(b) => b.append_value(v),
            Builder::Jsonb(b) => {
                let (version, text) = v.split_first().ok_or_else(|| anyhow!("empty jsonb"))?;
                if *version != 1 {
                    bail!("unknown jsonb version {version}");
                }
                b.append_value(std::str::from_utf8(text)?)
            }
            Builder::Uuid(b) => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                b.append_value(write_uuid(&fixed::<16>(v)?, &mut text))
            }
            Builder::Timestamp(b, _) => {
                b.append_value(timestamp_from_pg(i64::from_be_bytes(fixed(v)?))?)
            }
            Builder::Date(b) => b.append_value(date_from_pg(i32::from_be_bytes(fixed(v)?))?),
            Builder::Bytea(b) => b.append_value(v),
            Builder::TextList(b) => {
                decode_text_array(v, b.values())?;
                b.append(true)
            }
        }
        Ok(())
    }

    /// The column built so far; a text column with a value that is not UTF-8 gives the
    /// value's index in the batch and the reason.
    fn finish(&mut self) -> std::result::Result<ArrayRef, (usize, std::str::Utf8Error)> {
        Ok(match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Decimal(b, _) => Arc::new(b.finish()),
            Builder::Text(b) => utf8_column(b.finish())?,
            Builder::Jsonb(b) | Builder::Uuid(b) => Arc::new(b.finish()),
            Builder::Timestamp(b, tz) => {
                let a = b.finish();
                if *tz {
                    Arc::new(a.with_timezone("UTC"))
                } else {
                    Arc::new(a)
                }
            }
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Bytea(b) => Arc::new(b.finish()),
            Builder::TextList(b) => Arc::new(b.finish()),
        })
    }
}

/// A text column from bytes checked as UTF-8 in one pass; otherwise the index of the first
/// value that is not, and why.
fn utf8_column(values: BinaryArray) -> std::result::Result<ArrayRef, (usize, std::str::Utf8Error)> {
    match StringArray::try_from_binary(values.clone()) {
        Ok(text) => Ok(Arc::new(text)),
        Err(_) => Err(values
            .iter()
            .enumerate()
            .find_map(|(i, v)| std::str::from_utf8(v?).err().map(|e| (i, e)))
            .expect("a value that is not UTF-8")),
    }
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N]> {
    v.try_into()
        .map_err(|_| anyhow!("expected {N} bytes, got {}", v.len()))
}

/// Last day Arrow's dates and timestamps can be read back as (chrono, which Arrow and
/// DataFusion use to print, parse and convert them, ends with 262142-12-31), in days since
/// 1970. Postgres goes on to year 294276 (timestamps) and 5874897 (dates).
const MAX_ARROW_DAYS: i32 = 95_026_236;
/// chrono's first day (early in year -262143), in days since 1970; Postgres' own range starts
/// long after it.
const MIN_ARROW_DAYS: i32 = -96_465_292;
const MICROS_PER_DAY: i64 = 86_400_000_000;
const MAX_ARROW_MICROS: i64 = (MAX_ARROW_DAYS as i64 + 1) * MICROS_PER_DAY - 1;
const MIN_ARROW_MICROS: i64 = MIN_ARROW_DAYS as i64 * MICROS_PER_DAY;

/// What to do about a date or timestamp that Arrow cannot hold.
const FIX_THE_ROW: &str = "set it to a real date or NULL in the source, then extract again";

/// Postgres timestamp (microseconds since 2000) -> Arrow (microseconds since 1970).
fn timestamp_from_pg(micros: i64) -> Result<i64> {
    match micros {
        i64::MAX => bail!("`infinity` cannot be stored in an Arrow timestamp; {FIX_THE_ROW}"),
        i64::MIN => bail!("`-infinity` cannot be stored in an Arrow timestamp; {FIX_THE_ROW}"),
        _ => micros
            .checked_add(PG_EPOCH_OFFSET_MICROS)
            .filter(|m| (MIN_ARROW_MICROS..=MAX_ARROW_MICROS).contains(m))
            .ok_or_else(|| {
                anyhow!("a timestamp after 262142-12-31 cannot be stored in an Arrow timestamp; {FIX_THE_ROW}")
            }),
    }
}

/// Postgres date (days since 2000) -> Arrow Date32 (days since 1970).
fn date_from_pg(days: i32) -> Result<i32> {
    match days {
        i32::MAX => bail!("`infinity` cannot be stored in an Arrow date; {FIX_THE_ROW}"),
        i32::MIN => bail!("`-infinity` cannot be stored in an Arrow date; {FIX_THE_ROW}"),
        _ => days
            .checked_add(PG_EPOCH_OFFSET_DAYS)
            .filter(|d| (MIN_ARROW_DAYS..=MAX_ARROW_DAYS).contains(d))
            .ok_or_else(|| {
                anyhow!(
                    "a date after 262142-12-31 cannot be stored in an Arrow date; {FIX_THE_ROW}"
                )
            }),
    }
}

/// Arrow timestamp -> Postgres (never one of the values Postgres reads as +-infinity).
fn timestamp_to_pg(unix_micros: i64) -> Result<i64> {
    if !(MIN_ARROW_MICROS..=MAX_ARROW_MICROS).contains(&unix_micros) {
        bail!("timestamp {unix_micros} µs after 1970 is outside years -262143..262142");
    }
    Ok(unix_micros - PG_EPOCH_OFFSET_MICROS)
}

/// Arrow Date32 -> Postgres (never one of the values Postgres reads as +-infinity).
fn date_to_pg(unix_days: i32) -> Result<i32> {
    if !(MIN_ARROW_DAYS..=MAX_ARROW_DAYS).contains(&unix_days) {
        bail!("date {unix_days} days after 1970 is outside years -262143..262142");
    }
    Ok(unix_days - PG_EPOCH_OFFSET_DAYS)
}

fn format_uuid(b: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*b).hyphenated().to_string()
}

/// [`format_uuid`] into a buffer on the stack.
fn write_uuid<'a>(b: &[u8; 16], buf: &'a mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> &'a str {
    uuid::Uuid::from_bytes(*b).hyphenated().encode_lower(buf)
}

/// Postgres binary numeric -> i128 at `scale`. Fails rather than lose digits.
fn decode_numeric(v: &[u8], scale: i8) -> Result<i128> {
    let mut buf = v;
    if buf.len() < 8 {
        bail!("numeric value too short");
    }
    let ndigits = buf.get_i16() as i32;
    let weight = buf.get_i16() as i32;
    let sign = buf.get_u16();
    let _dscale = buf.get_i16();
    let special = match sign {
        0xC000 => Some("NaN"),
        0xD000 => Some("Infinity"),
        0xF000 => Some("-Infinity"),
        _ => None,
    };
    if let Some(special) = special {
        bail!(
            "`{special}` cannot be stored as DECIMAL(38,{scale}) (the column's declared precision); \
             set it to a number or NULL in the source, then extract again"
        );
    }
    if buf.len() < (ndigits as usize) * 2 {
        bail!("numeric value truncated");
    }
    let overflow = || anyhow!("numeric value does not fit in 38 digits");
    let mut int_val: i128 = 0;
    for _ in 0..ndigits {
        let d = buf.get_i16() as i128;
        int_val = int_val
            .checked_mul(10_000)
            .and_then(|x| x.checked_add(d))
            .ok_or_else(overflow)?;
    }
    // value = int_val * 10000^(weight - ndigits + 1); we want value * 10^scale.
    let exp10 = 4 * (weight - ndigits + 1) + scale as i32;
    let mut out = int_val;
    if exp10 >= 0 {
        for _ in 0..exp10 {
            out = out.checked_mul(10).ok_or_else(overflow)?;
        }
    } else {
        for _ in 0..(-exp10) {
            if out % 10 != 0 {
                bail!("numeric value has more than {scale} decimal places");
            }
            out /= 10;
        }
    }
    Ok(if sign == 0x4000 { -out } else { out })
}

fn decode_text_array(v: &[u8], values: &mut StringBuilder) -> Result<()> {
    let mut buf = v;
    if buf.len() < 12 {
        bail!("array value too short");
    }
    let ndim = buf.get_i32();
    let _has_null = buf.get_i32();
    let _elem = buf.get_u32();
    let mut count: i64 = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let len = buf.get_i32() as i64;
        let _lbound = buf.get_i32();
        count *= len;
    }
    for _ in 0..count {
        let len = buf.get_i32();
        if len < 0 {
            values.append_null();
        } else {
            let (s, rest) = buf.split_at(len as usize);
            values.append_value(std::str::from_utf8(s)?);
            buf = rest;
        }
    }
    Ok(())
}

/// Decodes a binary COPY stream into record batches of a fixed schema.
///
/// A batch ends after [`BATCH_ROWS`] rows or before the row that would take it past
/// `batch_bytes` (64 MiB unless set): Arrow's text and binary columns address at most 2 GiB
/// per batch, so a table of large values (50 MB jsonb documents) still fits.
pub struct CopyDecoder {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    builders: Vec<Builder>,
    /// Prepended Int64 column with the 1-based row number, if set.
    row_numbers: Option<Int64Builder>,
    /// Columns (indices into `kinds`) whose values name a row in an error.
    key_columns: Vec<usize>,
    /// A partial row (or the header) waiting for the rest of its bytes.
    buf: BytesMut,
    /// Field boundaries of the row being parsed (kept to reuse its allocation).
    spans: Vec<Option<(usize, usize)>>,
    header_seen: bool,
    finished: bool,
    rows_in_batch: usize,
    /// Bytes of the values in the current batch, as they came off the wire.
    bytes_in_batch: usize,
    batch_bytes: usize,
    /// Largest value one column of one batch can hold (Arrow's i32 offsets).
    value_bytes: usize,
    rows_total: u64,
    table: String,
}

/// Rows per record batch.
pub const BATCH_ROWS: usize = 32768;
/// Bytes of values per record batch (a batch holds at least one row, whatever its size).
pub const BATCH_BYTES: usize = 64 << 20;
/// Largest value an Arrow text or binary column can hold (its offsets are i32).
const ARROW_VALUE_BYTES: usize = i32::MAX as usize;

impl CopyDecoder {
    /// `schema` must be `kinds` in order (plus a leading Int64 row-number field when
    /// `with_row_numbers`).
    pub fn new(table: &str, schema: SchemaRef, kinds: Vec<Kind>, with_row_numbers: bool) -> Self {
        let builders = kinds.iter().map(Builder::new).collect();
        Self {
            schema,
            kinds,
            builders,
            row_numbers: with_row_numbers.then(Int64Builder::new),
            key_columns: Vec::new(),
            buf: BytesMut::new(),
            spans: Vec::new(),
            header_seen: false,
            finished: false,
            rows_in_batch: 0,
            bytes_in_batch: 0,
            batch_bytes: BATCH_BYTES,
            value_bytes: ARROW_VALUE_BYTES,
            rows_total: 0,
            table: table.to_string(),
        }
    }

    /// Name a row by these columns' values in errors (besides its position in the stream).
    /// Names that are not in the schema are ignored.
    pub fn with_key(mut self, columns: &[String]) -> Self {
        let offset = usize::from(self.row_numbers.is_some());
        self.key_columns = columns
            .iter()
            .filter_map(|c| self.schema.index_of(c).ok())
            .filter(|i| *i >= offset)
            .map(|i| i - offset)
            .collect();
        self
    }

    /// End a batch before the row that would take its values past `bytes`.
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.clamp(1, ARROW_VALUE_BYTES);
        self
    }

    pub fn rows(&self) -> u64 {
        self.rows_total
    }

    /// Feed one chunk; returns full batches ready to write.
    ///
    /// The server sends one row per COPY message, so rows are parsed straight from the chunk;
    /// only a row split across chunks (and the header) is gathered in a buffer first.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        if self.header_seen && self.buf.is_empty() {
            let used = self.rows_from(chunk, &mut out)?;
            self.buf.extend_from_slice(&chunk[used..]);
            return Ok(out);
        }
        self.buf.extend_from_slice(chunk);
        if !self.header_seen {
            if self.buf.len() < COPY_SIGNATURE.len() + 8 {
                return Ok(out);
            }
            if &self.buf[..COPY_SIGNATURE.len()] != COPY_SIGNATURE {
                bail!("{}: not a binary COPY stream", self.table);
            }
            let ext_len = i32::from_be_bytes(
                self.buf[COPY_SIGNATURE.len() + 4..COPY_SIGNATURE.len() + 8]
                    .try_into()
                    .expect("4 bytes"),
            ) as usize;
            if self.buf.len() < COPY_SIGNATURE.len() + 8 + ext_len {
                return Ok(out);
            }
            self.buf.advance(COPY_SIGNATURE.len() + 8 + ext_len);
            self.header_seen = true;
        }
        let buf = std::mem::take(&mut self.buf);
        let used = self.rows_from(&buf, &mut out);
        self.buf = buf;
        self.buf.advance(used?);
        Ok(out)
    }

    /// Decode the complete rows at the start of `data`; returns the bytes they took.
    fn rows_from(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<usize> {
        let mut used = 0;
        while !self.finished {
            match self.try_row(&data[used..], out)? {
                None => break,
                Some(n) => {
                    used += n;
                    if self.rows_in_batch >= BATCH_ROWS {
                        out.push(self.flush()?);
                    }
                }
            }
        }
        Ok(used)
    }

    /// Parse one row (or the trailer) from the start of `data` if it is complete; returns the
    /// bytes it took. A batch it ends goes to `out`.
    fn try_row(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<Option<usize>> {
        if data.len() < 2 {
            return Ok(None);
        }
        let nfields = i16::from_be_bytes([data[0], data[1]]);
        if nfields == -1 {
            self.finished = true;
            return Ok(Some(2));
        }
        if nfields as usize != self.kinds.len() {
            bail!(
                "{}: COPY row has {nfields} fields, expected {}",
                self.table,
                self.kinds.len()
            );
        }
        // Find the field boundaries first, so that a partial row is left for the next chunk.
        let mut pos = 2usize;
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        for _ in 0..nfields {
            if data.len() < pos + 4 {
                self.spans = spans;
                return Ok(None);
            }
            let len = i32::from_be_bytes(data[pos..pos + 4].try_into().expect("4 bytes"));
            pos += 4;
            if len < 0 {
                spans.push(None);
            } else {
                let len = len as usize;
                if data.len() < pos + len {
                    self.spans = spans;
                    return Ok(None);
                }
                spans.push(Some((pos, pos + len)));
                pos += len;
            }
        }
        let row = self.rows_total + 1;
        for (i, span) in spans.iter().enumerate() {
            if let Some((a, b)) = span {
                if b - a > self.value_bytes {
                    bail!(
                        "{}: {}, column {}: the value is {} bytes; Arrow holds at most {} bytes in one value",
                        self.table,
                        self.describe_row(row, data, &spans),
                        self.column_name(i),
                        b - a,
                        self.value_bytes
                    );
                }
            }
        }
        let row_bytes = pos;
        if self.rows_in_batch > 0 && self.bytes_in_batch + row_bytes > self.batch_bytes {
            out.push(self.flush()?);
        }
        for (i, span) in spans.iter().enumerate() {
            let value = span.map(|(a, b)| &data[a..b]);
            if let Err(e) = self.builders[i].append(value) {
                return Err(e.context(format!(
                    "{}: {}, column {}",
                    self.table,
                    self.describe_row(row, data, &spans),
                    self.column_name(i)
                )));
            }
        }
        if let Some(rn) = self.row_numbers.as_mut() {
            rn.append_value(row as i64);
        }
        self.spans = spans;
        self.rows_in_batch += 1;
        self.bytes_in_batch += row_bytes;
        self.rows_total += 1;
        Ok(Some(pos))
    }

    fn column_name(&self, i: usize) -> &str {
        let offset = usize::from(self.row_numbers.is_some());
        self.schema.field(i + offset).name()
    }

    /// `row 12` or `row 12 (id = 6f1c2d0e-...)`: the row's position in the stream and its key.
    fn describe_row(&self, row: u64, data: &[u8], spans: &[Option<(usize, usize)>]) -> String {
        self.row_with_keys(row, |k| {
            key_text(&self.kinds[k], spans[k].map(|(a, b)| &data[a..b]))
        })
    }

    /// `row 12 (id = ...)`, each key column's value shown by `key_text(column)`.
    fn row_with_keys(&self, row: u64, key_text: impl Fn(usize) -> String) -> String {
        let keys: Vec<String> = self
            .key_columns
            .iter()
            .take(3)
            .map(|&k| format!("{} = {}", self.column_name(k), key_text(k)))
            .collect();
        if keys.is_empty() {
            format!("row {row}")
        } else {
            format!("row {row} ({})", keys.join(", "))
        }
    }

    fn flush(&mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.builders.len() + 1);
        if let Some(rn) = self.row_numbers.as_mut() {
            columns.push(Arc::new(rn.finish()));
        }
        let first_row = self.rows_total + 1 - self.rows_in_batch as u64;
        self.rows_in_batch = 0;
        self.bytes_in_batch = 0;
        let built: Vec<_> = self.builders.iter_mut().map(Builder::finish).collect();
        if let Some((column, (at, e))) = built
            .iter()
            .enumerate()
            .find_map(|(i, b)| b.as_ref().err().map(|e| (i, *e)))
        {
            return Err(anyhow::Error::new(e).context(format!(
                "{}: {}, column {}",
                self.table,
                self.describe_built_row(first_row + at as u64, &built, at),
                self.column_name(column)
            )));
        }
        columns.extend(built.into_iter().map(|b| b.expect("no column failed")));
        RecordBatch::try_new(self.schema.clone(), columns)
            .with_context(|| format!("{}: cannot assemble a batch", self.table))
    }

    /// [`Self::describe_row`] for row `at` of a batch already built into columns.
    fn describe_built_row<E>(
        &self,
        row: u64,
        built: &[std::result::Result<ArrayRef, E>],
        at: usize,
    ) -> String {
        self.row_with_keys(row, |k| match &built[k] {
            Ok(column) if column.is_null(at) => "NULL".to_string(),
            Ok(column) => match self.kinds[k] {
                Kind::Int16 | Kind::Int32 | Kind::Int64 | Kind::Uuid => {
                    arrow::util::display::array_value_to_string(column, at).ok()
                }
                Kind::Text => column
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .map(|a| format!("'{}'", a.value(at))),
                _ => None,
            }
            .map_or_else(|| "(not shown)".to_string(), shortened),
            Err(_) => "(not shown)".to_string(),
        })
    }

    /// The last, partial batch (if any rows are left). Fails if the stream ended early.
    pub fn finish(mut self) -> Result<Option<RecordBatch>> {
        if !self.finished {
            bail!("{}: COPY stream ended before its trailer", self.table);
        }
        if self.rows_in_batch == 0 {
            return Ok(None);
        }
        Ok(Some(self.flush()?))
    }
}

/// A key value as it reads in an error message.
fn key_text(kind: &Kind, value: Option<&[u8]>) -> String {
    let Some(v) = value else {
        return "NULL".into();
    };
    let text = match kind {
        Kind::Int16 => fixed(v).map(|b| i16::from_be_bytes(b).to_string()).ok(),
        Kind::Int32 => fixed(v).map(|b| i32::from_be_bytes(b).to_string()).ok(),
        Kind::Int64 => fixed(v).map(|b| i64::from_be_bytes(b).to_string()).ok(),
        Kind::Uuid => fixed(v).map(|b| format_uuid(&b)).ok(),
        Kind::Text => std::str::from_utf8(v).ok().map(|s| format!("'{s}'")),
        _ => None,
    };
    text.map_or_else(|| "(not shown)".into(), shortened)
}

/// A key's text cut to 80 bytes (at a character boundary) for an error message.
fn shortened(mut text: String) -> String {
    if text.len() > 80 {
        let cut = (0..=80)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Encoding: Arrow -> binary COPY

/// How an Arrow column is written into one Postgres column.
#[derive(Debug, Clone)]
enum Encoder {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// numeric, from the Utf8 rendering of the value.
    Numeric,
    Text,
    Jsonb,
    Uuid,
    /// timestamptz or timestamp (the same wire format).
    Timestamp,
    Date,
    Bytea,
    /// An array of `elem`, from List(Utf8).
    Array {
        elem_oid: u32,
        elem: Box<Encoder>,
    },
}

/// The Arrow type a column is cast to before encoding, and the encoder.
fn encoder_for(col: &PgColumn) -> Result<(DataType, Encoder)> {
    if col.category == 'A' {
        let (_, elem) = scalar_encoder(&col.elem_typname).ok_or_else(|| {
            anyhow!(
                "column {} has type {}, whose elements cannot be loaded",
                col.name,
                col.type_name
            )
        })?;
        return Ok((
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            Encoder::Array {
                elem_oid: col.elem_oid,
                elem: Box::new(elem),
            },
        ));
    }
    scalar_encoder(&col.typname).ok_or_else(|| {
        anyhow!(
            "column {} has type {}, which cleanmig cannot load",
            col.name,
            col.type_name
        )
    })
}

fn scalar_encoder(typname: &str) -> Option<(DataType, Encoder)> {
    Some(match typname {
        "bool" => (DataType::Boolean, Encoder::Bool),
        "int2" => (DataType::Int16, Encoder::Int16),
        "int4" => (DataType::Int32, Encoder::Int32),
        "int8" => (DataType::Int64, Encoder::Int64),
        "float4" => (DataType::Float32, Encoder::Float32),
        "float8" => (DataType::Float64, Encoder::Float64),
        "numeric" => (DataType::Utf8, Encoder::Numeric),
        "text" | "varchar" | "bpchar" | "name" | "json" => (DataType::Utf8, Encoder::Text),
        "jsonb" => (DataType::Utf8, Encoder::Jsonb),
        "uuid" => (DataType::Utf8, Encoder::Uuid),
        "timestamptz" => (
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Encoder::Timestamp,
        ),
        "timestamp" => (
            DataType::Timestamp(TimeUnit::Microsecond, None),
            Encoder::Timestamp,
        ),
        "date" => (DataType::Date32, Encoder::Date),
        "bytea" => (DataType::Binary, Encoder::Bytea),
        _ => return None,
    })
}

/// Append one value as a COPY field (length + bytes, or -1 for NULL).
fn encode_value(enc: &Encoder, array: &dyn Array, i: usize, out: &mut BytesMut) -> Result<()> {
    if array.is_null(i) {
        out.put_i32(-1);
        return Ok(());
    }
    let len_at = out.len();
    out.put_i32(0);
    let a = array.as_any();
    let downcast_err = || anyhow!("unexpected Arrow array {:?}", array.data_type());
    match enc {
        Encoder::Bool => out.put_u8(
            a.downcast_ref::<BooleanArray>()
                .ok_or_else(downcast_err)?
                .value(i) as u8,
        ),
        Encoder::Int16 => out.put_i16(
            a.downcast_ref::<Int16Array>()
                .ok_or_else(downcast_err)?
                .value(i),
        ),
        Encoder::Int32 => out.put_i32(
            a.downcast_ref::<Int32Array>()
                .ok_or_else(downcast_err)?
                .value(i),
        ),
        Encoder::Int64 => out.put_i64(
            a.downcast_ref::<Int64Array>()
                .ok_or_else(downcast_err)?
                .value(i),
        ),
        Encoder::Float32 => out.put_f32(
            a.downcast_ref::<Float32Array>()
                .ok_or_else(downcast_err)?
                .value(i),
        ),
        Encoder::Float64 => out.put_f64(
            a.downcast_ref::<Float64Array>()
                .ok_or_else(downcast_err)?
                .value(i),
        ),
        Encoder::Timestamp => {
            let v = a
                .downcast_ref::<TimestampMicrosecondArray>()
                .ok_or_else(downcast_err)?
                .value(i);
            out.put_i64(timestamp_to_pg(v)?)
        }
        Encoder::Date => {
            let v = a
                .downcast_ref::<Date32Array>()
                .ok_or_else(downcast_err)?
                .value(i);
            out.put_i32(date_to_pg(v)?)
        }
        Encoder::Bytea => out.put_slice(
            a.downcast_ref::<BinaryArray>()
                .ok_or_else(downcast_err)?
                .value(i),
        ),
        Encoder::Numeric | Encoder::Text | Encoder::Jsonb | Encoder::Uuid => {
            let s = a
                .downcast_ref::<StringArray>()
                .ok_or_else(downcast_err)?
                .value(i);
            encode_str(enc, s, out)?;
        }
        Encoder::Array { elem_oid, elem } => {
            let list = a.downcast_ref::<ListArray>().ok_or_else(downcast_err)?;
            let values = list.value(i);
            let values = values
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| anyhow!("array elements must be text"))?;
            let n = values.len();
            out.put_i32(if n == 0 { 0 } else { 1 });
            out.put_i32(values.null_count().min(1) as i32);
            out.put_u32(*elem_oid);
            if n > 0 {
                out.put_i32(n as i32);
                out.put_i32(1);
            }
            for j in 0..n {
                if values.is_null(j) {
                    out.put_i32(-1);
                } else {
                    let at = out.len();
                    out.put_i32(0);
                    encode_str(elem, values.value(j), out)?;
                    let len = (out.len() - at - 4) as i32;
                    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
    }
    let len = (out.len() - len_at - 4) as i32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Encode a value given as text (numeric, text, jsonb, uuid, and array elements).
fn encode_str(enc: &Encoder, s: &str, out: &mut BytesMut) -> Result<()> {
    match enc {
        Encoder::Text => out.put_slice(s.as_bytes()),
        Encoder::Jsonb => {
            out.put_u8(1);
            out.put_slice(s.as_bytes())
        }
        Encoder::Uuid => {
            let u = uuid::Uuid::parse_str(s).map_err(|_| anyhow!("`{s}` is not a UUID"))?;
            out.put_slice(u.as_bytes())
        }
        Encoder::Numeric => encode_numeric(s, out)?,
        Encoder::Bool => out.put_u8(match s {
            "t" | "true" => 1,
            "f" | "false" => 0,
            _ => bail!("`{s}` is not a boolean"),
        }),
        Encoder::Int16 => out.put_i16(s.parse().map_err(|_| anyhow!("`{s}` is not an int2"))?),
        Encoder::Int32 => out.put_i32(s.parse().map_err(|_| anyhow!("`{s}` is not an int4"))?),
        Encoder::Int64 => out.put_i64(s.parse().map_err(|_| anyhow!("`{s}` is not an int8"))?),
        Encoder::Float64 => out.put_f64(s.parse().map_err(|_| anyhow!("`{s}` is not a float8"))?),
        other => bail!("array elements of kind {other:?} are not supported"),
    }
    Ok(())
}

/// Text such as `-1234.5600` -> Postgres binary numeric (dscale = digits after the point).
fn encode_numeric(s: &str, out: &mut BytesMut) -> Result<()> {
    let t = s.trim();
    let special = match t.to_ascii_lowercase().as_str() {
        "nan" => Some(0xC000),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(0xD000),
        "-infinity" | "-inf" => Some(0xF000),
        _ => None,
    };
    if let Some(sign) = special {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(sign);
        out.put_i16(0);
        return Ok(());
    }
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        bail!("`{s}` is not a number");
    }
    let dscale = frac_part.len() as i16;
    // Pad the integer part on the left and the fraction on the right to whole 4-digit groups.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let digits: String = "0".repeat(int_pad) + int_part + frac_part + &"0".repeat(frac_pad);
    let int_groups = (int_part.len() + int_pad) / 4;
    let mut groups: Vec<i16> = digits
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + (d - b'0') as i16))
        .collect();
    let mut weight = int_groups as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_i16(dscale);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

/// Something `COPY ... FROM STDIN` can be run on: a client or a transaction.
pub trait CopyTarget: tokio_postgres::GenericClient {
    fn copy_in_sink(
        &self,
        statement: &tokio_postgres::Statement,
    ) -> impl std::future::Future<
        Output = Result<tokio_postgres::CopyInSink<Bytes>, tokio_postgres::Error>,
    >;
}

impl CopyTarget for tokio_postgres::Client {
    async fn copy_in_sink(
        &self,
        statement: &tokio_postgres::Statement,
    ) -> Result<tokio_postgres::CopyInSink<Bytes>, tokio_postgres::Error> {
        self.copy_in(statement).await
    }
}

impl CopyTarget for tokio_postgres::Transaction<'_> {
    async fn copy_in_sink(
        &self,
        statement: &tokio_postgres::Statement,
    ) -> Result<tokio_postgres::CopyInSink<Bytes>, tokio_postgres::Error> {
        self.copy_in(statement).await
    }
}

/// How Arrow batches of one schema are copied into one table: the `COPY` statement and each
/// column's encoder.
pub struct CopyPlan {
    table: String,
    statement: String,
    /// (index in the batch, cast-to type, encoder, column name)
    columns: Vec<(usize, DataType, Encoder, String)>,
}

/// Plan the COPY of batches of `schema` into `qualified_table`, whose columns are `table_cols`
/// ([`tables_columns`]): Arrow columns map to table columns by name, generated columns are
/// skipped.
pub fn plan_copy(
    qualified_table: &str,
    schema: &Schema,
    table_cols: &[PgColumn],
) -> Result<CopyPlan> {
    let mut columns = Vec::new();
    let mut names = Vec::new();
    for (idx, field) in schema.fields().iter().enumerate() {
        let Some(col) = table_cols.iter().find(|c| &c.name == field.name()) else {
            bail!(
                "{qualified_table} has no column `{}` (columns: {})",
                field.name(),
                table_cols
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if col.generated {
            tracing::debug!(
                "{qualified_table}.{}: generated column, not loaded",
                col.name
            );
            continue;
        }
        let (cast_to, encoder) =
            encoder_for(col).with_context(|| format!("cannot load into {qualified_table}"))?;
        names.push(crate::sql::ident(&col.name));
        columns.push((idx, cast_to, encoder, col.name.clone()));
    }
    Ok(CopyPlan {
        table: qualified_table.to_string(),
        statement: format!(
            "COPY {qualified_table} ({}) FROM STDIN (FORMAT binary)",
            names.join(", ")
        ),
        columns,
    })
}

/// A planned COPY whose statement the server has prepared.
pub struct PreparedCopy {
    plan: CopyPlan,
    statement: tokio_postgres::Statement,
}

/// Prepare the statements of `plans`, all in one round trip (pipelined). Inside a transaction
/// the statements are named ones that [`crate::pg::Tx`] closes before it ends.
pub async fn prepare_copies(
    client: &impl tokio_postgres::GenericClient,
    plans: Vec<CopyPlan>,
) -> Result<Vec<PreparedCopy>> {
    let statements = crate::pg::pipelined(plans.iter().map(|plan| async move {
        client
            .prepare(&plan.statement)
            .await
            .with_context(|| format!("cannot start COPY into {}", plan.table))
    }))
    .await?;
    Ok(plans
        .into_iter()
        .zip(statements)
        .map(|(plan, statement)| PreparedCopy { plan, statement })
        .collect())
}

/// COPY record batches into `qualified_table` (binary format), mapping Arrow columns to table
/// columns by name; generated columns are skipped. Returns the number of rows written.
/// Values are checked as they are encoded: an error names the table, column and row.
pub async fn copy_in<C, I>(
    client: &C,
    qualified_table: &str,
    schema: &Schema,
    batches: I,
) -> Result<u64>
where
    C: CopyTarget,
    I: IntoIterator<Item = Result<RecordBatch>>,
{
    let table_cols = table_columns(client, qualified_table).await?;
    let plan = plan_copy(qualified_table, schema, &table_cols)?;
    let prepared = prepare_copies(client, vec![plan]).await?;
    copy_prepared(client, &prepared[0], batches).await
}

/// Run a prepared COPY ([`prepare_copies`]) of `batches`: two round trips, its start and its
/// end. Returns the number of rows written.
pub async fn copy_prepared<C, I>(client: &C, copy: &PreparedCopy, batches: I) -> Result<u64>
where
    C: CopyTarget,
    I: IntoIterator<Item = Result<RecordBatch>>,
{
    let PreparedCopy { plan, statement } = copy;
    let qualified_table = plan.table.as_str();
    let sink = client
        .copy_in_sink(statement)
        .await
        .with_context(|| format!("cannot start COPY into {qualified_table}"))?;
    pin_mut!(sink);
    let mut out = BytesMut::with_capacity(1 << 20);
    out.put_slice(COPY_SIGNATURE);
    out.put_i32(0);
    out.put_i32(0);
    let mut rows: u64 = 0;
    for batch in batches {
        let batch = batch?;
        let arrays: Vec<ArrayRef> = plan
            .columns
            .iter()
            .map(|(idx, cast_to, _, name)| {
                let a = batch.column(*idx);
                if a.data_type() == cast_to {
                    Ok(a.clone())
                } else {
                    arrow::compute::cast(a, cast_to).with_context(|| {
                        format!(
                            "{qualified_table}.{name}: cannot convert {} to {cast_to}",
                            a.data_type()
                        )
                    })
                }
            })
            .collect::<Result<_>>()?;
        for i in 0..batch.num_rows() {
            out.put_i16(plan.columns.len() as i16);
            for ((_, _, enc, name), array) in plan.columns.iter().zip(&arrays) {
                encode_value(enc, array.as_ref(), i, &mut out).with_context(|| {
                    format!("{qualified_table}: row {}, column {name}", rows + 1)
                })?;
            }
            rows += 1;
            if out.len() >= 1 << 20 {
                sink.send(out.split().freeze()).await?;
            }
        }
    }
    out.put_i16(-1);
    sink.send(out.split().freeze()).await?;
    let written = sink
        .finish()
        .await
        .with_context(|| format!("COPY into {qualified_table} failed"))?;
    Ok(written)
}

/// Drain a binary COPY-out stream through a decoder, handing each batch to `sink` with the rows
/// read so far. The sink is awaited, so one that waits (a full channel) yields to the runtime's
/// other tasks instead of holding its thread.
pub async fn copy_out<F, Fut>(
    client: &impl tokio_postgres::GenericClient,
    query: &str,
    mut decoder: CopyDecoder,
    mut sink: F,
) -> Result<u64>
where
    F: FnMut(RecordBatch, u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let sql = format!("COPY ({query}) TO STDOUT (FORMAT binary)");
    let stream = client
        .client()
        .copy_out(&sql)
        .await
        .with_context(|| format!("{}: COPY failed", decoder.table))?;
    pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("{}: COPY failed", decoder.table))?;
        for batch in decoder.push(&chunk)? {
            sink(batch, decoder.rows()).await?;
        }
    }
    let rows = decoder.rows();
    if let Some(batch) = decoder.finish()? {
        sink(batch, rows).await?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_numeric(text: &str, scale: i8) -> i128 {
        let mut out = BytesMut::new();
        encode_numeric(text, &mut out).unwrap();
        decode_numeric(&out, scale).unwrap()
    }

    #[test]
    fn numeric_survives_encoding_and_decoding() {
        assert_eq!(roundtrip_numeric("1000.00", 2), 100_000);
        assert_eq!(roundtrip_numeric("-0.0001", 4), -1);
        assert_eq!(roundtrip_numeric("0", 2), 0);
        assert_eq!(
            roundtrip_numeric("123456789012345678901234.5", 1),
            1_234_567_890_123_456_789_012_345
        );
        assert_eq!(roundtrip_numeric("10000", 0), 10_000);
        assert_eq!(roundtrip_numeric("0.5", 3), 500);
    }

    #[test]
    fn numeric_refuses_to_lose_digits() {
        let mut out = BytesMut::new();
        encode_numeric("1.25", &mut out).unwrap();
        let err = decode_numeric(&out, 1).unwrap_err().to_string();
        assert!(err.contains("more than 1 decimal places"), "{err}");
        assert!(encode_numeric("12a", &mut BytesMut::new()).is_err());
        assert!(encode_numeric("1,000.00", &mut BytesMut::new()).is_err());
    }

    /// A binary COPY stream of rows of (int4 id, one value).
    fn copy_stream(rows: &[(i32, Option<Vec<u8>>)]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_slice(COPY_SIGNATURE);
        out.put_i32(0);
        out.put_i32(0);
        for (id, value) in rows {
            out.put_i16(2);
            out.put_i32(4);
            out.put_i32(*id);
            match value {
                Some(v) => {
                    out.put_i32(v.len() as i32);
                    out.put_slice(v);
                }
                None => out.put_i32(-1),
            }
        }
        out.put_i16(-1);
        out.to_vec()
    }

    fn decoder(kind: Kind) -> CopyDecoder {
        let schema = Arc::new(Schema::new(vec![
            field("id", &Kind::Int32, "integer", false),
            field("value", &kind, "test", true),
        ]));
        CopyDecoder::new("public.t", schema, vec![Kind::Int32, kind], false)
            .with_key(&["id".to_string()])
    }

    /// Decode a whole stream; the batches, or the error's full text.
    fn decode(mut d: CopyDecoder, stream: &[u8]) -> std::result::Result<Vec<RecordBatch>, String> {
        let mut batches = d.push(stream).map_err(|e| format!("{e:#}"))?;
        batches.extend(d.finish().map_err(|e| format!("{e:#}"))?);
        Ok(batches)
    }

    #[test]
    fn rows_split_across_chunks_decode_as_the_whole_stream_does() {
        // Rows are parsed straight from a chunk; only the pieces of a split row are gathered.
        let rows: Vec<_> = (1..=40)
            .map(|i| {
                (
                    i,
                    (i % 7 != 0).then(|| format!("value {i}").repeat(i as usize).into_bytes()),
                )
            })
            .collect();
        let stream = copy_stream(&rows);
        let whole = decode(decoder(Kind::Text), &stream).unwrap();
        let row_chunks = {
            // As the server sends it: the header, then one message per row, then the trailer.
            let mut chunks = vec![&stream[..COPY_SIGNATURE.len() + 8]];
            let mut at = COPY_SIGNATURE.len() + 8;
            for (_, value) in &rows {
                let len = 2 + 8 + 4 + value.as_ref().map_or(0, Vec::len);
                chunks.push(&stream[at..at + len]);
                at += len;
            }
            chunks.push(&stream[at..]);
            chunks
        };
        let mut splits: Vec<(String, Vec<&[u8]>)> = [1, 3, 17, 64, 1000]
            .into_iter()
            .map(|n| (format!("chunks of {n} bytes"), stream.chunks(n).collect()))
            .collect();
        splits.push(("one message per row".into(), row_chunks));
        for (how, chunks) in splits {
            let mut d = decoder(Kind::Text);
            let mut batches = Vec::new();
            for chunk in chunks {
                batches.extend(d.push(chunk).unwrap());
            }
            batches.extend(d.finish().unwrap());
            assert_eq!(batches, whole, "{how}");
        }
        let truncated = &stream[..stream.len() - 5];
        let mut d = decoder(Kind::Text);
        for chunk in truncated.chunks(9) {
            d.push(chunk).unwrap();
        }
        assert!(format!("{:#}", d.finish().unwrap_err()).contains("ended before its trailer"));
    }

    #[test]
    fn batches_end_by_bytes_as_well_as_rows() {
        // Regression: a batch of 8,192 large text values overflowed Arrow's i32 offsets.
        let rows: Vec<_> = (1..=20).map(|i| (i, Some(vec![b'x'; 1000]))).collect();
        let batches = decode(
            decoder(Kind::Text).with_batch_bytes(4000),
            &copy_stream(&rows),
        )
        .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 20);
        assert!(batches.len() >= 5, "{} batches", batches.len());
        for b in &batches {
            let text = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            assert!(
                text.value_data().len() <= 4000,
                "{}",
                text.value_data().len()
            );
        }
        // One value larger than the cap still makes a batch of its own.
        let rows = [
            (1, Some(vec![b'y'; 10])),
            (2, Some(vec![b'z'; 9000])),
            (3, None),
        ];
        let batches = decode(
            decoder(Kind::Text).with_batch_bytes(4000),
            &copy_stream(&rows),
        )
        .unwrap();
        let sizes: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[test]
    fn text_that_is_not_utf8_is_an_error_naming_table_row_key_and_column() {
        // Text is checked once per batch; the error still names the row it came from, here in
        // the third batch of two rows each.
        let mut rows: Vec<_> = (1..=7)
            .map(|i| (i * 10, Some(format!("é {i}").into_bytes())))
            .collect();
        rows[5].1 = Some(b"caf\xe9 au lait".to_vec());
        for batch_bytes in [40, 64 << 20] {
            let err = decode(
                decoder(Kind::Text).with_batch_bytes(batch_bytes),
                &copy_stream(&rows),
            )
            .unwrap_err();
            assert!(
                err.contains("public.t: row 6 (id = 60), column value: invalid utf-8"),
                "{batch_bytes}: {err}"
            );
        }
        // Text keys are named from the built columns too, and valid text round-trips.
        let schema = Arc::new(Schema::new(vec![
            field("code", &Kind::Text, "text", false),
            field("value", &Kind::Text, "text", true),
        ]));
        let stream = {
            let mut out = BytesMut::new();
            out.put_slice(COPY_SIGNATURE);
            out.put_i32(0);
            out.put_i32(0);
            for (code, value) in [(&b"ok"[..], &b"fine"[..]), (b"b\xc3\xa9", b"\xff")] {
                out.put_i16(2);
                for v in [code, value] {
                    out.put_i32(v.len() as i32);
                    out.put_slice(v);
                }
            }
            out.put_i16(-1);
            out.to_vec()
        };
        let d = CopyDecoder::new("public.t", schema, vec![Kind::Text, Kind::Text], false)
            .with_key(&["code".to_string()]);
        let err = decode(d, &stream).unwrap_err();
        assert!(
            err.contains("public.t: row 2 (code = 'bé'), column value: invalid utf-8"),
            "{err}"
        );
        let valid: Vec<_> = (1..=3)
            .map(|i| (i, Some("ünï".repeat(i as usize).into_bytes())))
            .collect();
        let batches = decode(decoder(Kind::Text), &copy_stream(&valid)).unwrap();
        let text = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(text.value(2), "ünïünïünï");
    }

    #[test]
    fn a_value_too_large_for_arrow_is_an_error_naming_table_row_and_column() {
        let mut d = decoder(Kind::Text);
        d.value_bytes = 100;
        let rows = [(1, Some(vec![b'a'; 10])), (42, Some(vec![b'b'; 101]))];
        let err = decode(d, &copy_stream(&rows)).unwrap_err();
        assert!(
            err.contains("public.t: row 2 (id = 42), column value"),
            "{err}"
        );
        assert!(err.contains("101 bytes"), "{err}");
    }

    #[test]
    fn infinite_and_far_dates_are_errors_naming_table_row_and_column() {
        let cases: [(Kind, Vec<u8>, &str); 6] = [
            (
                Kind::Timestamptz,
                i64::MAX.to_be_bytes().to_vec(),
                "`infinity`",
            ),
            (
                Kind::Timestamp,
                i64::MIN.to_be_bytes().to_vec(),
                "`-infinity`",
            ),
            (Kind::Date, i32::MAX.to_be_bytes().to_vec(), "`infinity`"),
            (Kind::Date, i32::MIN.to_be_bytes().to_vec(), "`-infinity`"),
            (
                Kind::Timestamptz,
                (MAX_ARROW_MICROS - PG_EPOCH_OFFSET_MICROS + 1)
                    .to_be_bytes()
                    .to_vec(),
                "after 262142-12-31",
            ),
            (
                Kind::Date,
                (MAX_ARROW_DAYS - PG_EPOCH_OFFSET_DAYS + 1)
                    .to_be_bytes()
                    .to_vec(),
                "after 262142-12-31",
            ),
        ];
        for (kind, value, expected) in cases {
            let err = decode(decoder(kind.clone()), &copy_stream(&[(7, Some(value))])).unwrap_err();
            assert!(
                err.contains("public.t: row 1 (id = 7), column value"),
                "{kind:?}: {err}"
            );
            assert!(err.contains(expected), "{kind:?}: {err}");
            assert!(err.contains("extract again"), "{kind:?}: {err}");
        }
        // The last representable instant and day decode.
        let last = (MAX_ARROW_MICROS - PG_EPOCH_OFFSET_MICROS)
            .to_be_bytes()
            .to_vec();
        assert!(decode(decoder(Kind::Timestamptz), &copy_stream(&[(1, Some(last))])).is_ok());
    }

    #[test]
    fn arrow_date_range_is_chronos() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        assert_eq!(
            chrono::NaiveDate::MAX
                .signed_duration_since(epoch)
                .num_days(),
            MAX_ARROW_DAYS as i64
        );
        assert_eq!(
            chrono::NaiveDate::MIN
                .signed_duration_since(epoch)
                .num_days(),
            MIN_ARROW_DAYS as i64
        );
        // Nothing Arrow holds in range encodes as Postgres' +-infinity, and nothing outside
        // it encodes at all.
        assert!(timestamp_to_pg(MAX_ARROW_MICROS).unwrap() < i64::MAX);
        assert!(timestamp_to_pg(MAX_ARROW_MICROS + 1).is_err());
        assert!(timestamp_to_pg(i64::MIN).is_err());
        assert!(date_to_pg(i32::MAX).is_err());
        assert!(date_to_pg(i32::MIN).is_err());
    }

    #[test]
    fn numeric_nan_and_infinity_encode_and_refuse_to_become_decimals() {
        for (text, sign, shown) in [
            ("NaN", 0xC000u16, "`NaN`"),
            ("Infinity", 0xD000, "`Infinity`"),
            ("-Infinity", 0xF000, "`-Infinity`"),
        ] {
            let mut out = BytesMut::new();
            encode_numeric(text, &mut out).unwrap();
            assert_eq!(u16::from_be_bytes([out[4], out[5]]), sign, "{text}");
            let err = decode_numeric(&out, 2).unwrap_err().to_string();
            assert!(
                err.contains(shown) && err.contains("DECIMAL(38,2)"),
                "{err}"
            );
        }
    }

    #[test]
    fn declared_numeric_uses_its_scale() {
        // numeric(12,2) has typmod ((12 << 16) | 2) + 4
        assert_eq!(
            numeric_kind((12 << 16 | 2) + 4, None),
            Kind::Decimal { scale: 2 }
        );
        assert_eq!(
            numeric_kind(-1, Some((3, 10, false))),
            Kind::Decimal { scale: 3 }
        );
        assert_eq!(numeric_kind(-1, Some((3, 40, false))), Kind::Text);
        assert_eq!(numeric_kind(-1, Some((0, 1, true))), Kind::Text);
    }
}
