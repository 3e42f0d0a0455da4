//! What the live app changed: value-level differences between two versions of a table's rows
//! (the extracted rows and the live ones before a load; the rows a load wrote and the live ones
//! before a rollback), listed by table, key and column. Shared by the load's value-drift
//! refusal and the rollback's conflict refusal.

use crate::sql::{ident, literal};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tokio_postgres::Transaction;

/// How many differences are fetched per table (the count is always complete).
const FETCH_LIMIT: i64 = 1000;
/// How many differences a message shows.
const SHOWN: usize = 20;

/// One value that differs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    pub table: String,
    pub key: String,
    /// The column, or a word for the whole row (`(row deleted)`, `(row re-created)`).
    pub column: String,
    /// The value the tool knows (extracted, or written by the load).
    pub was: Option<String>,
    /// The live value now.
    pub now: Option<String>,
}

/// Every change found, and how many there are in all.
#[derive(Debug, Default, Serialize)]
pub struct Changes {
    pub total: u64,
    pub changes: Vec<Change>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn extend(&mut self, other: Changes) {
        self.total += other.total;
        self.changes.extend(other.changes);
    }

    /// Up to twenty changes, one per line, emails masked.
    pub fn summary(&self) -> String {
        let mut lines: Vec<String> = self
            .changes
            .iter()
            .take(SHOWN)
            .map(|c| {
                let show = |v: &Option<String>| match v {
                    Some(v) => format!("'{}'", mask_emails(v)),
                    None => "NULL".into(),
                };
                format!(
                    "  {} {}: {} {} -> now {}",
                    c.table,
                    c.key,
                    c.column,
                    show(&c.was),
                    show(&c.now)
                )
            })
            .collect();
        if self.total as usize > lines.len() {
            lines.push(format!("  ... {} in all", self.total));
        }
        lines.join("\n")
    }

    /// Write the full list to a private file (it holds customer data).
    pub fn write(&self, path: &Path) -> Result<PathBuf> {
        crate::artifacts::write_json(path, self)?;
        Ok(path.to_path_buf())
    }
}

/// Two versions of a table's rows to compare on `columns`, matched on `key`.
pub struct Versions<'a> {
    /// `schema.table` for messages.
    pub table: &'a str,
    pub key: &'a str,
    /// The version the tool knows (`was`).
    pub known: &'a str,
    /// The live version (`now`).
    pub live: &'a str,
    pub columns: &'a [String],
    /// A query giving the keys of the rows to look at (e.g. those the load would overwrite or
    /// delete), or `None` for every row. A set, so that it joins by hash at any size.
    pub only: Option<&'a str>,
    /// Extra SQL condition a difference must meet, on the unpivoted `v.col`, `v.was`, `v.now`,
    /// `v.other` and `v.other_differs` (the third version's value differs from the live one),
    /// and the third version's alias `o`.
    pub and: &'a str,
    /// A third version, joined on the key, whose value comes as `v.other`.
    pub other: Option<&'a str>,
}

/// Values of rows present in both versions that differ on a column.
pub async fn differing_values(tx: &Transaction<'_>, v: &Versions<'_>) -> Result<Changes> {
    if v.columns.is_empty() {
        return Ok(Changes::default());
    }
    let k = ident(v.key);
    let cmp = Comparison::of(tx, v.live).await?;
    let other_join = match v.other {
        Some(rel) => format!(" LEFT JOIN {rel} o ON o.{k} = l.{k}"),
        None => String::new(),
    };
    let mut only = match v.only {
        Some(keys) => format!(" AND l.{k} IN ({keys})"),
        None => String::new(),
    };
    // A live row that already equals the third version (what an earlier apply of the same
    // approval wrote) holds no change to report: leave it out before unpivoting.
    if v.other.is_some() {
        only.push_str(&format!(
            " AND (o.{k} IS NULL OR ROW({}) IS DISTINCT FROM ROW({}))",
            cmp.row("o", v.columns),
            cmp.row("l", v.columns)
        ));
    }
    let sql = format!(
        "WITH changed AS ( \
           SELECT l.{k} AS key FROM {live} l JOIN {known} k ON k.{k} = l.{k}{other_join} \
           WHERE ROW({kt}) IS DISTINCT FROM ROW({lt}){only}) \
         SELECT count(*) OVER ()::int8, l.{k}::text, v.col, v.was, v.now \
         FROM changed x JOIN {live} l ON l.{k} = x.key JOIN {known} k ON k.{k} = x.key{other_join} \
         CROSS JOIN LATERAL (VALUES {values}) AS v(col, was, now, other, differs, other_differs) \
         WHERE v.differs AND ({and}) \
         ORDER BY 2, 3 LIMIT {FETCH_LIMIT}",
        live = v.live,
        known = v.known,
        kt = cmp.row("k", v.columns),
        lt = cmp.row("l", v.columns),
        values = unpivot(v, &cmp),
        and = v.and,
    );
    collect(tx, &sql, v.table).await
}

/// How a column's values compare: as their type where it has an equality (numeric 1.00 = 1),
/// else as text.
struct Comparison {
    typed: Vec<String>,
}

impl Comparison {
    async fn of(tx: &Transaction<'_>, relation: &str) -> Result<Self> {
        let typed = crate::pg_arrow::table_columns(tx, relation)
            .await?
            .into_iter()
            .filter(|t| crate::fingerprint::hashable(&t.typname))
            .map(|t| t.name)
            .collect();
        Ok(Self { typed })
    }

    fn col(&self, alias: &str, c: &str) -> String {
        if self.typed.iter().any(|t| t == c) {
            format!("{alias}.{}", ident(c))
        } else {
            format!("{alias}.{}::text", ident(c))
        }
    }

    fn row(&self, alias: &str, columns: &[String]) -> String {
        columns
            .iter()
            .map(|c| self.col(alias, c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One VALUES row per column: (col, was, now, other, differs, other_differs).
fn unpivot(v: &Versions<'_>, cmp: &Comparison) -> String {
    v.columns
        .iter()
        .map(|c| {
            let (other, other_differs) = match v.other {
                Some(_) => (
                    format!("o.{}::text", ident(c)),
                    format!("{} IS DISTINCT FROM {}", cmp.col("o", c), cmp.col("l", c)),
                ),
                None => ("NULL::text".into(), "true".into()),
            };
            format!(
                "({}, k.{q}::text, l.{q}::text, {other}, {} IS DISTINCT FROM {}, {other_differs})",
                literal(c),
                cmp.col("k", c),
                cmp.col("l", c),
                q = ident(c)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keys of `rows` (alias `r`) that meet `condition`, reported as whole-row changes.
pub async fn row_changes(
    tx: &Transaction<'_>,
    table: &str,
    key: &str,
    rows: &str,
    condition: &str,
    what: &str,
) -> Result<Changes> {
    let sql = format!(
        "SELECT count(*) OVER ()::int8, r.{k}::text, {what}, NULL::text, NULL::text \
         FROM {rows} r WHERE {condition} ORDER BY 2 LIMIT {FETCH_LIMIT}",
        k = ident(key),
        what = literal(what),
    );
    collect(tx, &sql, table).await
}

async fn collect(tx: &Transaction<'_>, sql: &str, table: &str) -> Result<Changes> {
    let rows = crate::pg::query(tx, sql, &[], &[])
        .await
        .with_context(|| format!("cannot compare the rows of {table}"))?;
    Ok(Changes {
        total: rows.first().map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0),
        changes: rows
            .iter()
            .map(|r| Change {
                table: table.to_string(),
                key: r.get(1),
                column: r.get(2),
                was: r.get(3),
                now: r.get(4),
            })
            .collect(),
    })
}

/// `maria.santos@example.com` -> `m***@example.com`, wherever an email appears in the text.
pub fn mask_emails(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let local = |c: char| c.is_alphanumeric() || "._%+-'".contains(c);
    let mut masked = vec![false; chars.len()];
    for (at, _) in chars.iter().enumerate().filter(|(_, c)| **c == '@') {
        let mut start = at;
        while start > 0 && local(chars[start - 1]) {
            start -= 1;
        }
        for m in masked.iter_mut().take(at).skip(start + 1) {
            *m = true;
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut in_mask = false;
    for (c, m) in chars.iter().zip(&masked) {
        if *m {
            if !in_mask {
                out.push_str("***");
            }
            in_mask = true;
        } else {
            out.push(*c);
            in_mask = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_masked_wherever_they_appear() {
        assert_eq!(mask_emails("maria.santos@example.com"), "m***@example.com");
        assert_eq!(
            mask_emails("{\"email\": \"ab@x.ph\", \"n\": 1}"),
            "{\"email\": \"a***@x.ph\", \"n\": 1}"
        );
        assert_eq!(mask_emails("no email here"), "no email here");
        assert_eq!(mask_emails("a@b.c"), "a@b.c");
    }
}
