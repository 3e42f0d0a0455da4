//! Delete sets: the rows of a reconciled table that its clean copy no longer has, kept in a
//! temporary table per table (`cm_delete_<table>`), and the foreign keys between the reconciled
//! tables that decide when such a row may go.

use crate::catalog::{Catalog, Table};
use crate::sql::ident;
use anyhow::{Context, Result};
use tokio_postgres::Transaction;

/// A foreign key between two tables, as `pg_constraint` has it.
#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    /// Referencing table, qualified and quoted.
    pub child: String,
    /// Referencing table as people write it (`public.user_tags`).
    pub child_display: String,
    pub child_columns: Vec<String>,
    /// Referenced table as people write it (`public.unified_profiles`).
    pub parent: String,
    pub parent_columns: Vec<String>,
    /// Primary-key columns of the child (for samples and backups).
    pub child_pk: Vec<String>,
    pub on_delete_cascade: bool,
}

impl ForeignKey {
    /// SQL join condition between parent alias `p` and child alias `c`.
    pub fn join(&self) -> String {
        self.child_columns
            .iter()
            .zip(&self.parent_columns)
            .map(|(c, p)| format!("p.{} = c.{}", ident(p), ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// Every foreign key that references one of `parents` (`schema.table`), in a stable order.
/// Keys from the runs' backup schemas are left out.
pub async fn referencing(tx: &Transaction<'_>, parents: &[String]) -> Result<Vec<ForeignKey>> {
    let rows = crate::pg::query(
        tx,
        include_str!("sql/foreign_keys.sql"),
        &[&parents],
        &[tokio_postgres::types::Type::TEXT_ARRAY],
    )
    .await
    .context("cannot read foreign keys from pg_constraint")?;
    Ok(rows
        .iter()
        .map(|r| ForeignKey {
            name: r.get(0),
            child: r.get(1),
            child_display: r.get(2),
            parent: r.get(3),
            child_columns: r.get(4),
            parent_columns: r.get(5),
            child_pk: r.get(6),
            on_delete_cascade: r.get(7),
        })
        .collect())
}

/// Split foreign keys into those between reconciled tables and those from other tables.
pub fn split_internal(
    keys: Vec<ForeignKey>,
    catalog: &Catalog,
) -> (Vec<ForeignKey>, Vec<ForeignKey>) {
    keys.into_iter().partition(|k| {
        catalog
            .get(&k.child_display)
            .is_some_and(|t| t.is_reconciled())
    })
}

/// Fill the delete set of `table`: rows of the table whose key is not among the rows of
/// `source`. Returns its size.
pub async fn compute(tx: &Transaction<'_>, table: &Table, source: &str) -> Result<u64> {
    let set = ident(&table.delete_set());
    let key = ident(&table.key);
    let fill = format!(
        "DROP TABLE IF EXISTS {set}; \
         CREATE TEMP TABLE {set} ON COMMIT DROP AS \
           SELECT t.{key} AS key FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM {source} s WHERE s.{key} = t.{key}); \
         ALTER TABLE {set} ADD PRIMARY KEY (key); ANALYZE {set}",
        target = table.qualified()
    );
    let size = format!("SELECT count(*) FROM {set}");
    // The count is sent with the statements that fill the set (pipelined; it runs after them).
    let ((), n) = crate::pg::pipelined2(
        async {
            tx.batch_execute(&fill).await.with_context(|| {
                format!("cannot compute the rows to delete from {}", table.display())
            })
        },
        count(tx, &size),
    )
    .await?;
    Ok(n)
}

/// [`compute`] for several tables, the statements of all sent at once (pipelined; the server
/// runs them in the order given). Returns each set's size, in that order.
pub async fn compute_all(tx: &Transaction<'_>, tables: &[(&Table, String)]) -> Result<Vec<u64>> {
    crate::pg::pipelined(
        tables
            .iter()
            .map(|(table, source)| compute(tx, table, source)),
    )
    .await
}

/// SQL condition on parent alias `p`: the row is in its table's delete set.
pub fn in_delete_set(table: &Table) -> String {
    format!(
        "EXISTS (SELECT 1 FROM {} d WHERE d.key = p.{})",
        ident(&table.delete_set()),
        ident(&table.key)
    )
}

/// Delete the rows of `table`'s delete set; with `unreferenced_only`, only those that no row
/// of another reconciled table references (`internal`: the keys between reconciled tables).
#[tracing::instrument(name = "delete", skip_all, fields(table = %table.display()))]
pub async fn delete_rows(
    tx: &Transaction<'_>,
    table: &Table,
    internal: &[ForeignKey],
    unreferenced_only: bool,
) -> Result<u64> {
    let mut guard = String::new();
    if unreferenced_only {
        for fk in internal.iter().filter(|k| k.parent == table.display()) {
            guard.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM {} c WHERE {})",
                fk.child,
                fk.join()
            ));
        }
    }
    crate::pg::execute(
        tx,
        &format!(
            "DELETE FROM {target} p USING {set} d WHERE p.{key} = d.key{guard}",
            target = table.qualified(),
            set = ident(&table.delete_set()),
            key = ident(&table.key),
        ),
        &[],
        &[],
    )
    .await
    .with_context(|| format!("cannot delete from {}", table.display()))
}

/// Whether rows of `table`'s delete set are still in the table.
pub async fn rows_left(tx: &Transaction<'_>, table: &Table) -> Result<bool> {
    let row = crate::pg::query_one(
        tx,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM {set} d JOIN {target} p ON p.{key} = d.key)",
            set = ident(&table.delete_set()),
            target = table.qualified(),
            key = ident(&table.key),
        ),
        &[],
        &[],
    )
    .await
    .with_context(|| format!("cannot read the delete set of {}", table.display()))?;
    Ok(row.get(0))
}

/// Rows of the table that stay although the clean copy lacks them (`--dependents keep`):
/// of the `unmatched` rows [`compute`] put in the delete set, those no longer in it. The sets
/// only ever lose rows, and the table's rows cannot change meanwhile (the load holds it
/// against writes), so this counts them without reading the table again.
pub async fn kept(tx: &Transaction<'_>, table: &Table, unmatched: u64) -> Result<u64> {
    let left = count(
        tx,
        &format!("SELECT count(*) FROM {}", ident(&table.delete_set())),
    )
    .await?;
    unmatched.checked_sub(left).with_context(|| {
        format!(
            "the delete set of {} holds {left} rows, more than the {unmatched} it started with",
            table.display()
        )
    })
}

/// `--dependents keep`: take out of the delete sets every row that a row of another table
/// references, and the parents of every reconciled row that stays. Children first, so that a
/// kept row keeps what it points at.
pub async fn keep_referenced(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    external: &[ForeignKey],
    internal: &[ForeignKey],
) -> Result<()> {
    for table in catalog.reconciled().rev() {
        for fk in external.iter().filter(|k| k.parent == table.display()) {
            crate::pg::execute(
                tx,
                &format!(
                    "DELETE FROM {set} d USING {parent} p WHERE p.{key} = d.key AND EXISTS \
                     (SELECT 1 FROM {child} c WHERE {join})",
                    set = ident(&table.delete_set()),
                    parent = table.qualified(),
                    key = ident(&table.key),
                    child = fk.child,
                    join = fk.join()
                ),
                &[],
                &[],
            )
            .await?;
        }
        // Rows of this table that stay as they are (neither deleted nor restaged) keep
        // their parents.
        for fk in internal
            .iter()
            .filter(|k| k.child_display == table.display())
        {
            let Some(parent) = catalog.get(&fk.parent) else {
                continue;
            };
            crate::pg::execute(
                tx,
                &format!(
                    "DELETE FROM {pset} d USING {ptable} p WHERE p.{pkey} = d.key AND EXISTS \
                     (SELECT 1 FROM {child} c WHERE {join} \
                        AND NOT EXISTS (SELECT 1 FROM {cset} x WHERE x.key = c.{ckey}) \
                        AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.{ckey} = c.{ckey}))",
                    pset = ident(&parent.delete_set()),
                    ptable = parent.qualified(),
                    pkey = ident(&parent.key),
                    child = fk.child,
                    join = fk.join(),
                    cset = ident(&table.delete_set()),
                    ckey = ident(&table.key),
                    stage = ident(&table.temp()),
                ),
                &[],
                &[],
            )
            .await?;
        }
    }
    Ok(())
}

pub async fn count(tx: &Transaction<'_>, sql: &str) -> Result<u64> {
    let n: i64 = crate::pg::query_one(tx, sql, &[], &[]).await?.get(0);
    Ok(n as u64)
}
