//! Indexes a run creates for its own foreign-key checks, and drops before it ends.

use anyhow::{Context, Result};
use tokio_postgres::Transaction;

/// Indexes a run creates on referencing columns that have none, so that the foreign-key checks
/// of its DELETEs are index lookups rather than a scan of the referencing table per deleted row
/// (quadratic at scale). Created inside the run's transaction and dropped before it ends, so the
/// schema after the run is the schema before it.
///
/// Every row written to a table pays for each of its indexes, so an index on a table the run
/// writes is set aside while it writes ([`Self::set_aside`]) and made again only for deletes
/// that need it ([`Self::restore_for`]).
pub struct ForeignKeyIndexes {
    created: Vec<RunIndex>,
}

struct RunIndex {
    /// `schema.index`, quoted.
    qualified: String,
    /// The statement that makes it.
    create: String,
    /// The indexed table and the table its foreign key references, as people write them
    /// (`public.enrollments`).
    table: String,
    parent: String,
    /// Whether it exists now.
    present: bool,
}

impl ForeignKeyIndexes {
    /// Index every foreign key that references one of `parents` (`schema.table`, from any
    /// table, the destination tables included) and has no index whose leading columns are its
    /// columns.
    pub async fn create(tx: &Transaction<'_>, parents: &[String]) -> Result<Self> {
        let rows = crate::pg::query(
                tx,
                "SELECT format('%I.%I', cn.nspname, cc.relname), pg_has_role(cc.relowner, 'USAGE'), \
                        format('%I.%I', cn.nspname, 'cleanmig_fk_' || con.oid::text), \
                        format('%I', 'cleanmig_fk_' || con.oid::text), \
                        (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY k.i) \
                           FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                           JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n), \
                        cn.nspname || '.' || cc.relname, pn.nspname || '.' || pc.relname \
                 FROM pg_constraint con \
                 JOIN pg_class pc ON pc.oid = con.confrelid \
                 JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
                 JOIN pg_class cc ON cc.oid = con.conrelid \
                 JOIN pg_namespace cn ON cn.oid = cc.relnamespace \
                 WHERE con.contype = 'f' AND pn.nspname || '.' || pc.relname = ANY ($1::text[]) \
                   AND cn.nspname NOT LIKE 'cleanmig_backup_%' \
                   AND NOT EXISTS ( \
                     SELECT 1 FROM pg_index ix \
                     WHERE ix.indrelid = con.conrelid AND ix.indpred IS NULL AND ix.indexprs IS NULL \
                       AND (SELECT array_agg(k.n) FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(n, i) \
                            WHERE k.i <= cardinality(con.conkey)) @> con.conkey \
                       AND ix.indnkeyatts >= cardinality(con.conkey)) \
                 ORDER BY 1, 2",
                &[&parents],
                &[tokio_postgres::types::Type::TEXT_ARRAY],
            )
            .await
            .context("cannot read the foreign keys that reference the destination tables")?;
        let mut created = Vec::new();
        for r in rows {
            let (table, owned): (String, bool) = (r.get(0), r.get(1));
            let (qualified, name, columns): (String, String, String) =
                (r.get(2), r.get(3), r.get(4));
            if !owned {
                // Only a table's owner may index it (on hosted Supabase the auth tables belong
                // to supabase_auth_admin): the run goes on without, only slower.
                tracing::info!(
                    "{table} ({columns}) has no index for its foreign key and is not owned by this role; left as it is"
                );
                continue;
            }
            let index = RunIndex {
                qualified,
                create: format!("CREATE INDEX {name} ON {table} ({columns})"),
                table: r.get(5),
                parent: r.get(6),
                present: true,
            };
            tracing::debug!(
                "indexing {table} ({columns}) for the run as {}",
                index.qualified
            );
            created.push(index);
        }
        make_all(tx, created.iter()).await?;
        Ok(Self { created })
    }

    /// Drop the indexes on `written` (`schema.table`, as people write them), the tables the
    /// run is about to update and insert into. Returns how many.
    pub async fn set_aside(&mut self, tx: &Transaction<'_>, written: &[String]) -> Result<usize> {
        let aside: Vec<&mut RunIndex> = self
            .created
            .iter_mut()
            .filter(|i| i.present && written.contains(&i.table))
            .collect();
        if aside.is_empty() {
            return Ok(0);
        }
        let names: Vec<&str> = aside.iter().map(|i| i.qualified.as_str()).collect();
        tx.batch_execute(&format!("DROP INDEX {}", names.join(", ")))
            .await
            .context("cannot set aside the run's foreign-key indexes")?;
        let n = aside.len();
        for index in aside {
            index.present = false;
        }
        Ok(n)
    }

    /// Make again the set-aside indexes of the foreign keys that reference `parents`, before
    /// rows of those are deleted. Returns how many.
    pub async fn restore_for(&mut self, tx: &Transaction<'_>, parents: &[String]) -> Result<usize> {
        let wanted = |i: &RunIndex| !i.present && parents.contains(&i.parent);
        make_all(tx, self.created.iter().filter(|i| wanted(i))).await?;
        let mut n = 0;
        for index in self.created.iter_mut().filter(|i| wanted(i)) {
            index.present = true;
            n += 1;
        }
        Ok(n)
    }

    /// The tables that the foreign keys of set-aside indexes reference (`schema.table`).
    pub fn set_aside_parents(&self) -> Vec<String> {
        self.created
            .iter()
            .filter(|i| !i.present)
            .map(|i| i.parent.clone())
            .collect()
    }

    /// Drop the run's indexes (before commit).
    pub async fn drop(self, tx: &Transaction<'_>) -> Result<()> {
        let names: Vec<&str> = self
            .created
            .iter()
            .filter(|i| i.present)
            .map(|i| i.qualified.as_str())
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        tx.batch_execute(&format!("DROP INDEX {}", names.join(", ")))
            .await
            .context("cannot drop the run's foreign-key indexes")
    }

    pub fn len(&self) -> usize {
        self.created.len()
    }

    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
    }
}

/// Make `indexes`, their statements sent at once (pipelined on the one connection; the server
/// builds them one after another, and the first failure is the error returned).
async fn make_all<'a>(
    tx: &Transaction<'_>,
    indexes: impl Iterator<Item = &'a RunIndex>,
) -> Result<()> {
    crate::pg::pipelined(indexes.map(|index| index.make(tx))).await?;
    Ok(())
}

impl RunIndex {
    async fn make(&self, tx: &Transaction<'_>) -> Result<()> {
        tx.batch_execute(&self.create).await.with_context(|| {
            format!(
                "cannot index {} for the run's foreign-key checks ({})",
                self.table, self.create
            )
        })
    }
}
