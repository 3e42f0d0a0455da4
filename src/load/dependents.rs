//! Dependents: rows of other tables that reference rows about to be deleted, and what the
//! `--dependents` policy does with them.

use super::deletes::{self, ForeignKey};
use crate::catalog::Catalog;
use crate::sql::{ident, literal};
use anyhow::{Context, Result};
use serde::Serialize;
use tokio_postgres::Transaction;

/// Rows of one table that reference rows about to be deleted.
#[derive(Debug, Clone, Serialize)]
pub struct Dependents {
    pub table: String,
    pub constraint: String,
    pub references: String,
    pub rows: u64,
    pub sample_keys: Vec<String>,
    pub on_delete_cascade: bool,
}

impl std::fmt::Display for Dependents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} rows reference {} rows about to be deleted (foreign key {}{}), e.g. {}",
            self.table,
            self.rows,
            self.references,
            self.constraint,
            if self.on_delete_cascade {
                ", ON DELETE CASCADE"
            } else {
                ""
            },
            self.sample_keys.join("; ")
        )
    }
}

/// SQL condition on child alias `c`: the row references a row of the parent's delete set.
fn references_deleted(fk: &ForeignKey, catalog: &Catalog) -> Result<String> {
    let parent = catalog.get(&fk.parent).with_context(|| {
        format!(
            "foreign key {} references {}, which the catalogue lacks",
            fk.name, fk.parent
        )
    })?;
    Ok(format!(
        "EXISTS (SELECT 1 FROM {parent} p WHERE {join} AND {deleted})",
        parent = parent.qualified(),
        join = fk.join(),
        deleted = deletes::in_delete_set(parent),
    ))
}

/// The dependents of every delete set, one entry per foreign key that has any. Every key's
/// count is asked at once, then every sample of a key with dependents (pipelined).
pub async fn find(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    external: &[ForeignKey],
) -> Result<Vec<Dependents>> {
    let conditions: Vec<String> = external
        .iter()
        .map(|fk| references_deleted(fk, catalog))
        .collect::<Result<_>>()?;
    let counts: Vec<String> = external
        .iter()
        .zip(&conditions)
        .map(|(fk, cond)| format!("SELECT count(*) FROM {} c WHERE {cond}", fk.child))
        .collect();
    let counts = crate::pg::pipelined(counts.iter().map(|sql| deletes::count(tx, sql))).await?;
    let with_dependents: Vec<(&ForeignKey, u64, String)> = external
        .iter()
        .zip(counts)
        .zip(&conditions)
        .filter(|((_, n), _)| *n > 0)
        .map(|((fk, n), cond)| (fk, n, sample_sql(fk, cond)))
        .collect();
    let samples = crate::pg::pipelined(
        with_dependents
            .iter()
            .map(|(_, _, sql)| crate::pg::query(tx, sql, &[], &[])),
    )
    .await?;
    Ok(with_dependents
        .into_iter()
        .zip(samples)
        .map(|((fk, n, _), sample)| Dependents {
            table: fk.child_display.clone(),
            constraint: fk.name.clone(),
            references: fk.parent.rsplit('.').next().unwrap_or_default().to_string(),
            rows: n,
            sample_keys: sample.iter().map(|r| r.get(0)).collect(),
            on_delete_cascade: fk.on_delete_cascade,
        })
        .collect())
}

/// SQL: the keys of up to five rows of `fk`'s table that meet `cond` (alias `c`).
fn sample_sql(fk: &ForeignKey, cond: &str) -> String {
    let shown: Vec<String> = fk
        .child_pk
        .iter()
        .chain(&fk.child_columns)
        .map(|c| {
            format!(
                "{} || coalesce(c.{}::text, 'NULL')",
                literal(&format!("{c}=")),
                ident(c)
            )
        })
        .collect();
    format!(
        "SELECT concat_ws(', ', {}) FROM {} c WHERE {cond} ORDER BY 1 LIMIT 5",
        shown.join(", "),
        fk.child
    )
}

/// Name of the table in the backup schema that holds the dependents deleted from `child`.
/// Derived from the table's name with an encoding that keeps it one identifier.
fn backup_table(fk: &ForeignKey) -> String {
    // Postgres cuts identifiers at 63 bytes: a long name keeps a readable prefix and a hash of
    // the whole, so two tables never share a backup table.
    let name = format!("dependents__{}", fk.child_display.replace('.', "__"));
    if name.len() <= 63 {
        return name;
    }
    use sha2::{Digest, Sha256};
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
    let mut prefix = String::new();
    for c in name.chars() {
        if prefix.len() + c.len_utf8() > 63 - 9 {
            break;
        }
        prefix.push(c);
    }
    format!("{prefix}_{hash}")
}

/// `--dependents delete`: back up and delete the referencing rows, before anything else is
/// deleted. Returns rows deleted per table.
pub async fn delete(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    external: &[ForeignKey],
    backup_schema: &str,
) -> Result<Vec<(String, u64)>> {
    let schema = ident(backup_schema);
    let mut statements = Vec::with_capacity(external.len());
    for fk in external {
        let name = backup_table(fk);
        let bk = format!("{schema}.{}", ident(&name));
        let backup = format!(
            "CREATE TABLE IF NOT EXISTS {bk} (LIKE {child}); \
             INSERT INTO {schema}.restore_dependents (backup_table, target_table) \
               SELECT {bk_name}, {child_name} WHERE NOT EXISTS \
               (SELECT 1 FROM {schema}.restore_dependents WHERE backup_table = {bk_name})",
            child = fk.child,
            bk_name = literal(&name),
            child_name = literal(&fk.child),
        );
        let delete = format!(
            "WITH gone AS (DELETE FROM {child} c WHERE {cond} RETURNING c.*) \
                 INSERT INTO {bk} SELECT * FROM gone",
            child = fk.child,
            cond = references_deleted(fk, catalog)?
        );
        statements.push((backup, delete));
    }
    // Every statement sent at once, in order (pipelined): the server runs them one after
    // another, and after a failure the rest fail too, so the first error is the one returned.
    let counts = crate::pg::pipelined(external.iter().zip(&statements).map(
        |(fk, (backup, delete))| async move {
            let ((), n) = crate::pg::pipelined2(
                async {
                    tx.batch_execute(backup).await.with_context(|| {
                        format!("cannot back up the dependents in {}", fk.child_display)
                    })
                },
                async {
                    crate::pg::execute(tx, delete, &[], &[])
                        .await
                        .with_context(|| {
                            format!("cannot delete the dependents in {}", fk.child_display)
                        })
                },
            )
            .await?;
            Ok::<_, anyhow::Error>(n)
        },
    ))
    .await?;
    let mut deleted: Vec<(String, u64)> = Vec::new();
    for (fk, n) in external.iter().zip(counts) {
        if n > 0 {
            match deleted.iter_mut().find(|(t, _)| t == &fk.child_display) {
                Some((_, total)) => *total += n,
                None => deleted.push((fk.child_display.clone(), n)),
            }
        }
    }
    Ok(deleted)
}
