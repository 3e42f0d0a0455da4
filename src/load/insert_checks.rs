//! Inserts whose foreign keys are checked once per statement instead of once per row.
//!
//! Postgres checks each inserted row's foreign keys with a trigger that runs a query per row:
//! for the load's bulk inserts that is most of their time. When the session may set
//! `session_replication_role` (a superuser, a role granted `SET` on it, or hosted Supabase's
//! `postgres`), an insert into a table whose only insert triggers are those checks runs with
//! triggers off (`replica`), and statements right after it do the triggers' work for all
//! its rows at once, before anything can commit:
//! - the parent rows the new rows reference are locked `FOR KEY SHARE`, as each check locks
//!   its parent, unless the run's own table lock or its own write of the row already keeps
//!   others from changing them;
//! - a new row whose parent does not exist (by then) refuses the load, naming the key and a
//!   value, as the trigger would have refused the insert.
//!
//! Everything else keeps its triggers: other tables, updates and deletes (whose triggers keep
//! children consistent), and every insert of a session that may not set the parameter.

use crate::sql::{ident, literal};
use anyhow::{bail, Context, Result};
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

/// Whether this run's inserts may check their foreign keys per statement.
#[derive(Debug, Clone, Copy)]
pub struct InsertChecks {
    per_statement: bool,
}

/// One foreign key of a table, checked per statement.
#[derive(Debug, Clone)]
struct Key {
    name: String,
    column: String,
    /// Quoted, schema-qualified.
    parent: String,
    parent_column: String,
    /// The transaction holds a lock on the parent that keeps others from writing it.
    parent_locked: bool,
}

/// How one table's insert checks its foreign keys: per row (no keys) or per statement.
#[derive(Debug, Clone, Default)]
pub struct TableChecks {
    keys: Vec<Key>,
}

/// An `INSERT INTO target ... SELECT ...` statement (no `RETURNING`).
pub struct Insert<'a> {
    /// Quoted, schema-qualified.
    pub target: &'a str,
    pub sql: &'a str,
}

impl InsertChecks {
    /// Find whether the session may set `session_replication_role`, in a savepoint, so that a
    /// refusal leaves the transaction as it was.
    pub async fn probe(tx: &Transaction<'_>) -> Result<Self> {
        let set = tx
            .batch_execute(
                "SAVEPOINT cm_replica_role; \
                 SET LOCAL session_replication_role = replica; \
                 SET LOCAL session_replication_role = origin; \
                 RELEASE SAVEPOINT cm_replica_role",
            )
            .await;
        let per_statement = match set {
            Ok(()) => {
                tracing::info!(
                    "inserts check their foreign keys once per statement where a table's only \
                     insert triggers are those checks"
                );
                true
            }
            Err(e) => {
                tracing::info!(
                    "inserts check their foreign keys row by row: this role may not set \
                     session_replication_role"
                );
                tracing::debug!("{e}");
                tx.batch_execute(
                    "ROLLBACK TO SAVEPOINT cm_replica_role; RELEASE SAVEPOINT cm_replica_role",
                )
                .await
                .context(
                    "cannot return to the savepoint before setting session_replication_role",
                )?;
                false
            }
        };
        Ok(Self { per_statement })
    }

    /// Whether inserts may check their foreign keys per statement.
    pub fn per_statement(&self) -> bool {
        self.per_statement
    }

    /// Row by row, as Postgres does by itself.
    pub fn per_row() -> Self {
        Self {
            per_statement: false,
        }
    }

    /// How inserts into `target` (quoted, schema-qualified) check their foreign keys.
    pub async fn table(&self, tx: &Transaction<'_>, target: &str) -> Result<TableChecks> {
        if !self.per_statement {
            return Ok(TableChecks::default());
        }
        // The lock the insert takes anyway, taken first: from now until the run ends, nobody
        // can add a trigger or a rule to the table.
        let ((), rows) = crate::pg::pipelined2(
            async {
                tx.batch_execute(&format!("LOCK TABLE {target} IN ROW EXCLUSIVE MODE"))
                    .await
                    .with_context(|| format!("cannot lock {target} for the run's inserts"))
            },
            async {
                crate::pg::query(
                    tx,
                    include_str!("sql/insert_foreign_keys.sql"),
                    &[&target],
                    &[Type::TEXT],
                )
                .await
                .with_context(|| format!("cannot read the foreign keys of {target}"))
            },
        )
        .await?;
        let keys: Vec<Key> = rows
            .iter()
            .map(|r| Key {
                name: r.get(0),
                column: r.get(1),
                parent: r.get(2),
                parent_column: r.get(3),
                parent_locked: r.get(4),
            })
            .collect();
        tracing::debug!(
            "{target}: {} foreign keys checked per statement on insert",
            keys.len()
        );
        Ok(TableChecks { keys })
    }
}

/// The temporary table of the foreign-key columns of the rows one insert wrote.
const INSERTED_KEYS: &str = "cm_inserted_keys";

impl TableChecks {
    /// The key columns, each once.
    fn columns(&self) -> String {
        let mut columns: Vec<&str> = self.keys.iter().map(|k| k.column.as_str()).collect();
        columns.sort_unstable();
        columns.dedup();
        columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The statements that lock the parent rows that no table lock of the run covers and that
    /// the run did not write itself (nobody else can change or delete a row version this
    /// transaction wrote until it ends).
    fn lock_sql(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|k| !k.parent_locked)
            .map(|k| {
                format!(
                    "SELECT count(*) FROM (SELECT 1 FROM ONLY {parent} p WHERE p.{pc} IN \
                     (SELECT k.{c} FROM {INSERTED_KEYS} k) \
                     AND p.xmin <> pg_current_xact_id()::xid FOR KEY SHARE OF p) locked",
                    parent = k.parent,
                    pc = ident(&k.parent_column),
                    c = ident(&k.column),
                )
            })
            .collect()
    }

    /// One statement: per key, the inserted rows whose parent does not exist, and the least
    /// value.
    fn missing_sql(&self) -> String {
        self.keys
            .iter()
            .map(|k| {
                format!(
                    "SELECT {name}::text, count(*), min(k.{c}::text) FROM {INSERTED_KEYS} k \
                     WHERE k.{c} IS NOT NULL \
                     AND NOT EXISTS (SELECT 1 FROM ONLY {parent} p WHERE p.{pc} = k.{c})",
                    name = literal(&k.name),
                    c = ident(&k.column),
                    pc = ident(&k.parent_column),
                    parent = k.parent,
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    }

    /// Run `insert`: with its triggers when this table's keys are checked row by row. Else,
    /// sent at once and run in this order: the insert without triggers, keeping the key
    /// columns of the rows it wrote aside; the parents' locks; the check that every parent
    /// exists, in a statement of its own so that it sees a parent deleted by another session
    /// before the lock. Returns the rows inserted; refuses (the transaction must then roll
    /// back) when one has no parent.
    pub async fn insert(&self, tx: &Transaction<'_>, insert: &Insert<'_>) -> Result<u64> {
        let what = || format!("cannot insert into {}", insert.target);
        if self.keys.is_empty() {
            return crate::pg::execute(tx, insert.sql, &[], &[])
                .await
                .with_context(what);
        }
        let columns = self.columns();
        let before = format!(
            "CREATE TEMP TABLE {INSERTED_KEYS} ON COMMIT DROP AS \
             SELECT {columns} FROM {target} WITH NO DATA; \
             SET LOCAL session_replication_role = replica",
            target = insert.target
        );
        let write = format!(
            "WITH inserted AS ({sql} RETURNING {columns}) \
             INSERT INTO {INSERTED_KEYS} SELECT {columns} FROM inserted",
            sql = insert.sql
        );
        let mut after = vec![
            "SET LOCAL session_replication_role = origin".to_string(),
            format!("ANALYZE {INSERTED_KEYS}"),
        ];
        after.extend(self.lock_sql());
        let after = after.join("; ");
        let missing = self.missing_sql();
        let batch = |sql: String, context: String| async move {
            tx.batch_execute(&sql).await.context(context)
        };
        // Each statement is a future of its own, so that all go out in this order.
        let ((), (inserted, ((), (rows, ())))) = crate::pg::pipelined2(
            batch(
                before,
                format!("cannot prepare the insert into {}", insert.target),
            ),
            crate::pg::pipelined2(
                async {
                    crate::pg::execute(tx, &write, &[], &[])
                        .await
                        .with_context(what)
                },
                crate::pg::pipelined2(
                    batch(
                        after,
                        format!("cannot lock the rows {} references", insert.target),
                    ),
                    crate::pg::pipelined2(
                        async {
                            crate::pg::query(tx, &missing, &[], &[])
                                .await
                                .with_context(|| {
                                    format!("cannot check the foreign keys of {}", insert.target)
                                })
                        },
                        batch(
                            format!("DROP TABLE {INSERTED_KEYS}"),
                            format!("cannot drop {INSERTED_KEYS}"),
                        ),
                    ),
                ),
            ),
        )
        .await?;
        for row in &rows {
            let count: i64 = row.get(1);
            if count > 0 {
                let key: String = row.get(0);
                let value: Option<String> = row.get(2);
                let k = self.keys.iter().find(|k| k.name == key);
                bail!(
                    "rows to insert into {} that reference no row of {}: {count} (foreign key \
                     {key}; for example {} = {}); nothing was written",
                    insert.target,
                    k.map(|k| k.parent.as_str()).unwrap_or("its parent"),
                    k.map(|k| k.column.as_str()).unwrap_or("?"),
                    value.unwrap_or_default()
                );
            }
        }
        Ok(inserted)
    }
}
