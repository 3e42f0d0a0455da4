//! A run's backup: a schema per applied load or rollback holding the reconciled tables as they
//! were before it, the auth users it created, the dependents it deleted, and the catalogue it
//! ran with (so that a rollback knows the tables, keys and order the run used).

use crate::catalog::Catalog;
use crate::sql::ident;
use anyhow::{bail, Context, Result};
use tokio_postgres::Transaction;

/// Name of the schema holding a run's backup.
pub fn schema_name(run_id: &str) -> Result<String> {
    if run_id.is_empty()
        || !run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("`{run_id}` is not a run id (see `cleanmig status` for the last runs)");
    }
    Ok(format!(
        "cleanmig_backup_{}",
        run_id.to_lowercase().replace('-', "_")
    ))
}

/// Create the run's backup schema with a copy of the reconciled tables as they are now.
pub async fn create(tx: &Transaction<'_>, backup_schema: &str, catalog: &Catalog) -> Result<()> {
    let schema = ident(backup_schema);
    let mut sql = format!(
        "CREATE SCHEMA {schema}; \
         COMMENT ON SCHEMA {schema} IS 'cleanmig: destination tables before the run; see population_operation_log'; \
         CREATE TABLE {schema}.created_auth_users (id uuid PRIMARY KEY); \
         CREATE TABLE {schema}.restore_dependents (backup_table text PRIMARY KEY, target_table text NOT NULL); \
         CREATE TABLE {schema}.catalog (catalog text NOT NULL);"
    );
    for table in catalog.reconciled() {
        sql.push_str(&format!(
            "CREATE TABLE {schema}.{b} AS TABLE {q}; ",
            b = ident(&table.backup_table()),
            q = table.qualified()
        ));
    }
    let insert = format!("INSERT INTO {schema}.catalog (catalog) VALUES ($1)");
    let catalog = serde_json::to_string(catalog)?;
    // The catalogue's row sent with the tables (pipelined; it runs after them).
    crate::pg::pipelined2(
        async {
            tx.batch_execute(&sql).await.with_context(|| {
                format!("cannot back up the destination tables into schema {backup_schema}")
            })
        },
        async {
            crate::pg::execute(
                tx,
                &insert,
                &[&catalog],
                &[tokio_postgres::types::Type::TEXT],
            )
            .await
            .with_context(|| format!("cannot record the catalogue in schema {backup_schema}"))
        },
    )
    .await?;
    Ok(())
}

/// The backup table of rows the run wrote (inserted or changed), for `table`'s backup table.
pub fn written_table(backup_table: &str) -> String {
    format!("written__{backup_table}")
}

/// The backup table of keys the run deleted.
pub fn deleted_table(backup_table: &str) -> String {
    format!("deleted__{backup_table}")
}

/// After the run's writes, before commit: record what it wrote (rows that differ from their
/// version before the run, or are new) and the keys it deleted, so that a rollback can tell the
/// run's own writes from the app's later ones.
pub async fn record_writes(
    tx: &Transaction<'_>,
    backup_schema: &str,
    catalog: &Catalog,
) -> Result<()> {
    let schema = ident(backup_schema);
    let tables: Vec<&crate::catalog::Table> = catalog.reconciled().collect();
    let names: Vec<String> = tables.iter().map(|t| t.qualified()).collect();
    // What each table's records need, for every table in two round trips.
    let (written, columns) = crate::pg::pipelined2(
        written_in_transaction_all(tx, &names),
        crate::pg_arrow::tables_columns(tx, &names),
    )
    .await?;
    let mut statements = Vec::with_capacity(tables.len());
    for ((table, written), columns) in tables.iter().zip(written).zip(columns) {
        let columns = columns.with_context(|| {
            format!(
                "cannot read the columns of {}: no such table",
                table.display()
            )
        })?;
        let before = format!("{schema}.{}", ident(&table.backup_table()));
        let key = ident(&table.key);
        // A table this transaction wrote no row to (by the load or by a trigger) is as the
        // backup holds it: nothing to compare.
        let only_if_written = if written.any() { "" } else { " WITH NO DATA" };
        let same = same_row(&columns, "b", "t");
        statements.push(format!(
            "CREATE TABLE {schema}.{written} AS SELECT t.* FROM {live} t \
               WHERE NOT EXISTS (SELECT 1 FROM {before} b WHERE b.{key} = t.{key} AND {same}){only_if_written}; \
             CREATE TABLE {schema}.{deleted} AS SELECT b.{key} FROM {before} b \
               WHERE NOT EXISTS (SELECT 1 FROM {live} t WHERE t.{key} = b.{key}){only_if_written}",
            written = ident(&written_table(&table.backup_table())),
            deleted = ident(&deleted_table(&table.backup_table())),
            live = table.qualified(),
        ));
    }
    // Sent at once (pipelined); the server runs them in order, and after a failure the next
    // ones fail too: the first error is the one returned.
    let records = async {
        crate::pg::pipelined(
            tables
                .iter()
                .zip(&statements)
                .map(|(table, sql)| async move {
                    tx.batch_execute(sql).await.with_context(|| {
                        format!("cannot record what the run wrote to {}", table.display())
                    })
                }),
        )
        .await
        .map(drop)
    };
    // The backup's privileges go with them (it runs after them).
    crate::pg::pipelined2(records, make_private(tx, backup_schema)).await?;
    Ok(())
}

/// Rows this transaction inserted, updated and deleted in a table, by any statement or trigger
/// (`pg_stat_xact_all_tables`).
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
}

impl Written {
    pub fn any(&self) -> bool {
        self.inserted + self.updated + self.deleted > 0
    }
}

pub async fn written_in_transaction(
    tx: &Transaction<'_>,
    table: &crate::catalog::Table,
) -> Result<Written> {
    let mut written = written_in_transaction_all(tx, &[table.qualified()]).await?;
    written
        .pop()
        .with_context(|| format!("cannot count the rows written to {}", table.display()))
}

/// [`written_in_transaction`] for each of `qualified_tables`, in one round trip, in the order
/// given.
async fn written_in_transaction_all(
    tx: &Transaction<'_>,
    qualified_tables: &[String],
) -> Result<Vec<Written>> {
    let rows = crate::pg::query(
        tx,
        "SELECT coalesce(sum(s.n_tup_ins), 0)::int8, coalesce(sum(s.n_tup_upd), 0)::int8, \
                coalesce(sum(s.n_tup_del), 0)::int8 \
         FROM unnest($1::text[]) WITH ORDINALITY u(t, n) \
         LEFT JOIN pg_stat_xact_all_tables s ON s.relid = u.t::regclass \
         GROUP BY u.n ORDER BY u.n",
        &[&qualified_tables],
        &[tokio_postgres::types::Type::TEXT_ARRAY],
    )
    .await
    .with_context(|| {
        format!(
            "cannot count the rows written to {}",
            qualified_tables.join(", ")
        )
    })?;
    Ok(rows
        .iter()
        .map(|row| Written {
            inserted: row.get(0),
            updated: row.get(1),
            deleted: row.get(2),
        })
        .collect())
}

/// SQL: rows `a` and `b` of a relation with `columns` hold the same values in every column,
/// NULLs equal. Compared by type where the type has equality and hashing (the reconcile's own
/// comparison), by text otherwise (`json`, which has no equality).
fn same_row(columns: &[crate::pg_arrow::PgColumn], a: &str, b: &str) -> String {
    format!(
        "{} IS NOT DISTINCT FROM {}",
        crate::fingerprint::row_expression(a, columns),
        crate::fingerprint::row_expression(b, columns)
    )
}

/// Statistics for the backup's tables, which a rollback joins at scale: tables made inside a
/// transaction have none until autovacuum gets to them, and without them the planner may pick
/// nested loops over millions of rows.
pub async fn analyze(tx: &Transaction<'_>, backup_schema: &str, catalog: &Catalog) -> Result<()> {
    let schema = ident(backup_schema);
    let mut tables = Vec::new();
    for table in catalog.reconciled() {
        let bt = table.backup_table();
        for name in [bt.clone(), written_table(&bt), deleted_table(&bt)] {
            tables.push(format!("{schema}.{}", ident(&name)));
        }
    }
    tx.batch_execute(&format!("ANALYZE {}", tables.join(", ")))
        .await
        .with_context(|| format!("cannot analyze the tables of backup schema {backup_schema}"))
}

/// Whether the backup records what its run wrote (backups of older versions do not).
pub async fn has_writes(
    tx: &Transaction<'_>,
    backup_schema: &str,
    catalog: &Catalog,
) -> Result<bool> {
    let Some(first) = catalog.reconciled().next() else {
        return Ok(true);
    };
    let name = crate::sql::qualified(backup_schema, &written_table(&first.backup_table()));
    Ok(tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await?
        .get(0))
}

/// Take every privilege on one of the tool's schemas from PUBLIC and Supabase's API roles, and
/// turn row-level security on for its tables: backups and the log hold customer data, and
/// nothing the tool creates may be readable with the public anon key.
pub async fn make_private(client: &impl tokio_postgres::GenericClient, schema: &str) -> Result<()> {
    let sql = include_str!("sql/private.sql").replace("{schema}", &crate::sql::literal(schema));
    client
        .batch_execute(&sql)
        .await
        .with_context(|| format!("cannot make schema {schema} private"))
}

/// The catalogue a backed-up run used.
pub async fn catalog(tx: &Transaction<'_>, backup_schema: &str) -> Result<Catalog> {
    let row = crate::pg::query_one(
        tx,
        &format!("SELECT catalog FROM {}.catalog", ident(backup_schema)),
        &[],
        &[],
    )
    .await
    .with_context(|| format!("backup schema {backup_schema} holds no catalogue"))?;
    let text: String = row.get(0);
    serde_json::from_str(&text)
        .with_context(|| format!("the catalogue in backup schema {backup_schema} is not valid"))
}

/// Whether a schema exists.
pub async fn schema_exists(tx: &Transaction<'_>, schema: &str) -> Result<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await?
        .get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_schema_is_derived_from_the_run_id_and_rejects_anything_else() {
        let id = crate::load::guard::new_run_id();
        let schema = schema_name(&id).unwrap();
        assert!(schema.starts_with("cleanmig_backup_"), "{schema}");
        assert!(schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert!(schema_name("x; DROP TABLE users").is_err());
        assert!(schema_name("").is_err());
    }
}
