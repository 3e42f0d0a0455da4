//! Indexes a run creates for its own foreign-key checks, and drops before it ends.

use anyhow::{Context, Result};
use tokio_postgres::Transaction;

/// Indexes a run creates on referencing columns that have none, so that the foreign-key checks
/// of its DELETEs are index lookups rather than a scan of the referencing table per deleted row
/// (quadratic at scale). Created inside the run's transaction and dropped before it ends, so the
/// schema after the run is the schema before it.
pub struct ForeignKeyIndexes {
    /// `schema.index` names, quoted.
    created: Vec<String>,
}

impl ForeignKeyIndexes {
    /// Index every foreign key that references one of `parents` (`schema.table`, from any
    /// table, the destination tables included) and has no index whose leading columns are its
    /// columns.
    pub async fn create(tx: &Transaction<'_>, parents: &[String]) -> Result<Self> {
        let rows = tx
            .query(
                "SELECT format('%I.%I', cn.nspname, cc.relname), pg_has_role(cc.relowner, 'USAGE'), \
                        format('%I.%I', cn.nspname, 'cleanmig_fk_' || con.oid::text), \
                        format('%I', 'cleanmig_fk_' || con.oid::text), \
                        (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY k.i) \
                           FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                           JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) \
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
            tx.batch_execute(&format!("CREATE INDEX {name} ON {table} ({columns})"))
                .await
                .with_context(|| {
                    format!("cannot index {table} ({columns}) for the run's foreign-key checks")
                })?;
            tracing::debug!("indexed {table} ({columns}) for the run as {qualified}");
            created.push(qualified);
        }
        Ok(Self { created })
    }

    /// Drop the run's indexes (before commit).
    pub async fn drop(self, tx: &Transaction<'_>) -> Result<()> {
        if self.created.is_empty() {
            return Ok(());
        }
        tx.batch_execute(&format!("DROP INDEX {}", self.created.join(", ")))
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
