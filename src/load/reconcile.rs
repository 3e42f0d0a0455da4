//! Set-based reconciliation of a destination table with a complete clean copy of it, the
//! foreign-key dependents of rows about to be deleted, and backups. Shared by load and rollback.

use crate::fingerprint::quote_ident;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio_postgres::Transaction;

/// The three tables the load rebuilds, in foreign-key order (parents first).
pub static DESTINATIONS: [Destination; 3] = [
    Destination {
        table: "unified_profiles",
        artifact: "profiles",
        app_owned: &[
            "tier",
            "tier_assignment",
            "tier_assignment_notes",
            "last_active_at",
        ],
    },
    Destination {
        table: "transactions",
        artifact: "transactions",
        app_owned: &[],
    },
    Destination {
        table: "enrollments",
        artifact: "enrollments",
        app_owned: &["progress", "last_activity_at", "completion_date", "notes"],
    },
];

/// A destination table.
#[derive(Debug, Clone, Copy)]
pub struct Destination {
    /// Table name in `public`.
    pub table: &'static str,
    /// Staged artifact stem (`stage/<artifact>.parquet`).
    pub artifact: &'static str,
    /// Columns the live app maintains: never written on an existing row.
    pub app_owned: &'static [&'static str],
}

impl Destination {
    /// `public.<table>`, unquoted.
    pub fn name(&self) -> String {
        format!("public.{}", self.table)
    }
    pub fn qualified(&self) -> String {
        format!("public.{}", quote_ident(self.table))
    }
    /// Temporary table of the keys about to be deleted.
    pub fn delete_set(&self) -> String {
        format!("cm_delete_{}", self.table)
    }
}

/// Per-table outcome, as in the seed's `populate_clean_data()` result.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TableCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Rows not in the clean set that stay (`--dependents keep`).
    pub kept: u64,
    /// Rows of the clean set.
    pub staged: u64,
}

/// How updates treat the columns of an existing row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Load: app-owned columns and `updated_at` are not compared and app-owned columns not
    /// written; `updated_at` is set to now() on rows where something else changed.
    Load,
    /// Rollback: every column is restored exactly.
    Restore,
}

/// Columns (non-generated) of a real table, in order.
pub async fn writable_columns(tx: &Transaction<'_>, qualified: &str) -> Result<Vec<String>> {
    let rows = tx
        .query(
            "SELECT a.attname::text FROM pg_attribute a \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attgenerated = '' ORDER BY a.attnum",
            &[&qualified],
        )
        .await
        .with_context(|| format!("cannot read the columns of {qualified}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Reconciles `target` with the complete clean rows in `source`, matching on `id`.
pub struct Reconcile {
    pub target: String,
    pub source: String,
    /// Columns written on insert.
    pub insert_columns: Vec<String>,
    /// Columns compared and written on update.
    pub update_columns: Vec<String>,
    /// Set `updated_at = now()` on updated rows.
    pub touch_updated_at: bool,
}

impl Reconcile {
    /// `source_columns`: the columns the clean rows carry.
    pub async fn new(
        tx: &Transaction<'_>,
        target: &str,
        source: &str,
        source_columns: &[String],
        app_owned: &[&str],
        mode: UpdateMode,
    ) -> Result<Self> {
        let table_columns = writable_columns(tx, target).await?;
        if !source_columns.iter().any(|c| c == "id") {
            bail!("the clean rows for {target} have no `id` column");
        }
        let insert_columns: Vec<String> = table_columns
            .iter()
            .filter(|c| source_columns.contains(c))
            .cloned()
            .collect();
        let has_updated_at = table_columns.iter().any(|c| c == "updated_at");
        let update_columns = insert_columns
            .iter()
            .filter(|c| c.as_str() != "id")
            .filter(|c| match mode {
                UpdateMode::Load => c.as_str() != "updated_at" && !app_owned.contains(&c.as_str()),
                UpdateMode::Restore => true,
            })
            .cloned()
            .collect();
        Ok(Self {
            target: target.to_string(),
            source: source.to_string(),
            insert_columns,
            update_columns,
            touch_updated_at: mode == UpdateMode::Load && has_updated_at,
        })
    }

    fn differs(&self) -> String {
        if self.update_columns.is_empty() {
            return "false".into();
        }
        let t: Vec<String> = self
            .update_columns
            .iter()
            .map(|c| format!("t.{}", quote_ident(c)))
            .collect();
        let s: Vec<String> = self
            .update_columns
            .iter()
            .map(|c| format!("s.{}", quote_ident(c)))
            .collect();
        format!(
            "ROW({}) IS DISTINCT FROM ROW({})",
            t.join(", "),
            s.join(", ")
        )
    }

    /// SQL: update the rows whose compared columns differ.
    pub fn update_sql(&self) -> String {
        let mut sets: Vec<String> = self
            .update_columns
            .iter()
            .map(|c| format!("{q} = s.{q}", q = quote_ident(c)))
            .collect();
        if self.touch_updated_at {
            sets.push("\"updated_at\" = now()".into());
        }
        format!(
            "UPDATE {target} t SET {sets} FROM {source} s WHERE t.id = s.id AND {differs}",
            target = self.target,
            source = self.source,
            sets = sets.join(", "),
            differs = self.differs()
        )
    }

    /// SQL: insert the clean rows that are missing.
    pub fn insert_sql(&self) -> String {
        let cols: Vec<String> = self.insert_columns.iter().map(|c| quote_ident(c)).collect();
        let cols = cols.join(", ");
        format!(
            "INSERT INTO {target} ({cols}) SELECT {cols} FROM {source} s \
             WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.id = s.id)",
            target = self.target,
            source = self.source,
        )
    }

    /// SQL: count clean rows whose row in the table differs (0 after a correct reconcile).
    pub fn mismatch_sql(&self) -> String {
        format!(
            "SELECT count(*) FROM {source} s WHERE NOT EXISTS (SELECT 1 FROM {target} t \
             WHERE t.id = s.id AND NOT ({differs}))",
            target = self.target,
            source = self.source,
            differs = self.differs()
        )
    }

    pub async fn update(&self, tx: &Transaction<'_>) -> Result<u64> {
        tx.execute(&self.update_sql(), &[])
            .await
            .with_context(|| format!("cannot update {}", self.target))
    }

    pub async fn insert(&self, tx: &Transaction<'_>) -> Result<u64> {
        tx.execute(&self.insert_sql(), &[])
            .await
            .with_context(|| format!("cannot insert into {}", self.target))
    }

    pub async fn mismatches(&self, tx: &Transaction<'_>) -> Result<i64> {
        Ok(tx.query_one(&self.mismatch_sql(), &[]).await?.get(0))
    }
}

/// Fill the delete set of `dest`: rows of the table whose id is not among the clean rows.
pub async fn compute_delete_set(
    tx: &Transaction<'_>,
    dest: &Destination,
    source: &str,
) -> Result<u64> {
    let set = quote_ident(&dest.delete_set());
    tx.batch_execute(&format!(
        "DROP TABLE IF EXISTS {set}; \
         CREATE TEMP TABLE {set} ON COMMIT DROP AS \
           SELECT t.id FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM {source} s WHERE s.id = t.id); \
         ALTER TABLE {set} ADD PRIMARY KEY (id); ANALYZE {set}",
        target = dest.qualified()
    ))
    .await
    .with_context(|| format!("cannot compute the rows to delete from {}", dest.table))?;
    count(tx, &format!("SELECT count(*) FROM {set}")).await
}

/// Delete the rows of the delete set, optionally only those nothing in `enrollments` points at.
pub async fn delete_rows(
    tx: &Transaction<'_>,
    dest: &Destination,
    unreferenced_only: bool,
) -> Result<u64> {
    let guard = if unreferenced_only {
        " AND NOT EXISTS (SELECT 1 FROM public.enrollments e WHERE e.user_id = t.id)"
    } else {
        ""
    };
    tx.execute(
        &format!(
            "DELETE FROM {target} t USING {set} d WHERE t.id = d.id{guard}",
            target = dest.qualified(),
            set = quote_ident(&dest.delete_set())
        ),
        &[],
    )
    .await
    .with_context(|| format!("cannot delete from {}", dest.table))
}

async fn count(tx: &Transaction<'_>, sql: &str) -> Result<u64> {
    let n: i64 = tx.query_one(sql, &[]).await?.get(0);
    Ok(n as u64)
}

/// A foreign key of another table that references a destination table.
#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    /// Referencing table, qualified and quoted.
    pub child: String,
    /// Referencing table as people write it (`public.user_tags`).
    pub child_display: String,
    pub child_columns: Vec<String>,
    pub parent: &'static Destination,
    pub parent_columns: Vec<String>,
    /// Primary-key columns of the child (for samples and backups).
    pub child_pk: Vec<String>,
    pub on_delete_cascade: bool,
}

impl ForeignKey {
    /// SQL condition on child alias `c`: the row references a row of the parent's delete set.
    fn references_deleted(&self) -> String {
        let join: Vec<String> = self
            .child_columns
            .iter()
            .zip(&self.parent_columns)
            .map(|(c, p)| format!("p.{} = c.{}", quote_ident(p), quote_ident(c)))
            .collect();
        format!(
            "EXISTS (SELECT 1 FROM {parent} p JOIN {set} d ON d.id = p.id WHERE {join})",
            parent = self.parent.qualified(),
            set = quote_ident(&self.parent.delete_set()),
            join = join.join(" AND ")
        )
    }
}

/// Foreign keys from tables other than the destination tables themselves (found in
/// pg_constraint), in a stable order.
pub async fn foreign_keys(tx: &Transaction<'_>) -> Result<Vec<ForeignKey>> {
    let rows = tx
        .query(
            "SELECT con.conname::text, \
                    format('%I.%I', cn.nspname, cc.relname), \
                    cn.nspname || '.' || cc.relname, \
                    pc.relname::text, \
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i), \
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i) \
                          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i), \
                    ARRAY(SELECT a.attname::text FROM pg_index ix JOIN pg_attribute a \
                          ON a.attrelid = ix.indrelid AND a.attnum = ANY (ix.indkey) \
                          WHERE ix.indrelid = con.conrelid AND ix.indisprimary ORDER BY a.attnum), \
                    con.confdeltype = 'c' \
             FROM pg_constraint con \
             JOIN pg_class pc ON pc.oid = con.confrelid \
             JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
             JOIN pg_class cc ON cc.oid = con.conrelid \
             JOIN pg_namespace cn ON cn.oid = cc.relnamespace \
             WHERE con.contype = 'f' AND pn.nspname = 'public' \
               AND pc.relname IN ('unified_profiles', 'transactions', 'enrollments') \
               AND NOT (cn.nspname = 'public' AND cc.relname IN ('unified_profiles', 'transactions', 'enrollments')) \
               AND cn.nspname NOT LIKE 'cleanmig_backup_%' \
             ORDER BY 3, 1",
            &[],
        )
        .await
        .context("cannot read foreign keys from pg_constraint")?;
    let mut keys = Vec::new();
    for r in rows {
        let parent_name: String = r.get(3);
        let parent = DESTINATIONS
            .iter()
            .find(|d| d.table == parent_name)
            .expect("query filters on destination tables");
        keys.push(ForeignKey {
            name: r.get(0),
            child: r.get(1),
            child_display: r.get(2),
            parent,
            child_columns: r.get(4),
            parent_columns: r.get(5),
            child_pk: r.get(6),
            on_delete_cascade: r.get(7),
        });
    }
    Ok(keys)
}

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

/// Find the dependents of every delete set.
pub async fn find_dependents(tx: &Transaction<'_>, keys: &[ForeignKey]) -> Result<Vec<Dependents>> {
    let mut found = Vec::new();
    for fk in keys {
        let cond = fk.references_deleted();
        let n = count(
            tx,
            &format!("SELECT count(*) FROM {} c WHERE {cond}", fk.child),
        )
        .await?;
        if n == 0 {
            continue;
        }
        let key_cols: Vec<&String> = fk.child_pk.iter().chain(&fk.child_columns).collect();
        let shown: Vec<String> = key_cols
            .iter()
            .map(|c| format!("'{c}=' || coalesce(c.{}::text, 'NULL')", quote_ident(c)))
            .collect();
        let sample = tx
            .query(
                &format!(
                    "SELECT concat_ws(', ', {}) FROM {} c WHERE {cond} ORDER BY 1 LIMIT 5",
                    shown.join(", "),
                    fk.child
                ),
                &[],
            )
            .await?;
        found.push(Dependents {
            table: fk.child_display.clone(),
            constraint: fk.name.clone(),
            references: fk.parent.table.to_string(),
            rows: n,
            sample_keys: sample.iter().map(|r| r.get(0)).collect(),
            on_delete_cascade: fk.on_delete_cascade,
        });
    }
    Ok(found)
}

/// `--dependents keep`: take out of the delete sets every row that something references,
/// and the profiles and transactions of kept enrollments.
pub async fn keep_referenced(tx: &Transaction<'_>, keys: &[ForeignKey]) -> Result<()> {
    // Enrollments first: a kept enrollment keeps its profile and transaction.
    for parent in ["enrollments", "unified_profiles", "transactions"] {
        for fk in keys.iter().filter(|k| k.parent.table == parent) {
            let join: Vec<String> = fk
                .child_columns
                .iter()
                .zip(&fk.parent_columns)
                .map(|(c, p)| format!("p.{} = c.{}", quote_ident(p), quote_ident(c)))
                .collect();
            tx.execute(
                &format!(
                    "DELETE FROM {set} d USING {parent} p WHERE p.id = d.id AND EXISTS \
                     (SELECT 1 FROM {child} c WHERE {join})",
                    set = quote_ident(&fk.parent.delete_set()),
                    parent = fk.parent.qualified(),
                    child = fk.child,
                    join = join.join(" AND ")
                ),
                &[],
            )
            .await?;
        }
        if parent == "enrollments" {
            tx.batch_execute(
                "DELETE FROM cm_delete_unified_profiles d USING public.enrollments e \
                   WHERE e.user_id = d.id AND NOT EXISTS (SELECT 1 FROM cm_delete_enrollments x WHERE x.id = e.id) \
                     AND NOT EXISTS (SELECT 1 FROM cm_stage_enrollments s WHERE s.id = e.id); \
                 DELETE FROM cm_delete_transactions d USING public.enrollments e \
                   WHERE e.transaction_id = d.id AND NOT EXISTS (SELECT 1 FROM cm_delete_enrollments x WHERE x.id = e.id) \
                     AND NOT EXISTS (SELECT 1 FROM cm_stage_enrollments s WHERE s.id = e.id)",
            )
            .await?;
        }
    }
    Ok(())
}

/// Name of the table in the backup schema that holds the dependents deleted from `child`.
fn dependents_backup_table(fk: &ForeignKey) -> String {
    format!("dependents__{}", fk.child_display.replace('.', "__"))
}

/// `--dependents delete`: back up and delete the referencing rows, before anything else is
/// deleted. Returns rows deleted per table.
pub async fn delete_dependents(
    tx: &Transaction<'_>,
    keys: &[ForeignKey],
    backup_schema: &str,
) -> Result<Vec<(String, u64)>> {
    let schema = quote_ident(backup_schema);
    let mut deleted: Vec<(String, u64)> = Vec::new();
    for fk in keys {
        let bk = format!("{schema}.{}", quote_ident(&dependents_backup_table(fk)));
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {bk} (LIKE {child}); \
             INSERT INTO {schema}.restore_dependents (backup_table, target_table) \
               SELECT {bk_name}, {child_name} WHERE NOT EXISTS \
               (SELECT 1 FROM {schema}.restore_dependents WHERE backup_table = {bk_name})",
            child = fk.child,
            bk_name = sql_literal(&dependents_backup_table(fk)),
            child_name = sql_literal(&fk.child),
        ))
        .await?;
        let n = tx
            .execute(
                &format!(
                    "WITH gone AS (DELETE FROM {child} c WHERE {cond} RETURNING c.*) \
                     INSERT INTO {bk} SELECT * FROM gone",
                    child = fk.child,
                    cond = fk.references_deleted()
                ),
                &[],
            )
            .await
            .with_context(|| format!("cannot delete the dependents in {}", fk.child_display))?;
        if n > 0 {
            match deleted.iter_mut().find(|(t, _)| t == &fk.child_display) {
                Some((_, total)) => *total += n,
                None => deleted.push((fk.child_display.clone(), n)),
            }
        }
    }
    Ok(deleted)
}

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
    pub async fn create(tx: &Transaction<'_>, parents: &[&str]) -> Result<Self> {
        let parents: Vec<String> = parents.iter().map(|p| p.to_string()).collect();
        let rows = tx
            .query(
                "SELECT format('%I.%I', cn.nspname, cc.relname), \
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
            let (table, qualified, name, columns): (String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
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

/// A string literal for SQL.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Create the run's backup schema with a copy of the destination tables as they are now.
pub async fn create_backup(tx: &Transaction<'_>, backup_schema: &str) -> Result<()> {
    let schema = quote_ident(backup_schema);
    let mut sql = format!(
        "CREATE SCHEMA {schema}; \
         COMMENT ON SCHEMA {schema} IS 'cleanmig: destination tables before load run; see population_operation_log'; \
         CREATE TABLE {schema}.created_auth_users (id uuid PRIMARY KEY); \
         CREATE TABLE {schema}.restore_dependents (backup_table text PRIMARY KEY, target_table text NOT NULL);"
    );
    for dest in &DESTINATIONS {
        sql.push_str(&format!(
            "CREATE TABLE {schema}.{t} AS TABLE {q}; ",
            t = quote_ident(dest.table),
            q = dest.qualified()
        ));
    }
    tx.batch_execute(&sql).await.with_context(|| {
        format!("cannot back up the destination tables into schema {backup_schema}")
    })
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

    fn profiles() -> Reconcile {
        Reconcile {
            target: "public.\"unified_profiles\"".into(),
            source: "cm_stage_unified_profiles".into(),
            insert_columns: vec![
                "id".into(),
                "email".into(),
                "tier".into(),
                "updated_at".into(),
            ],
            update_columns: vec!["email".into()],
            touch_updated_at: true,
        }
    }

    #[test]
    fn updates_touch_only_rows_that_differ_and_set_updated_at_with_them() {
        // Guards idempotence: a second load updates nothing and moves no timestamp.
        assert_eq!(
            profiles().update_sql(),
            "UPDATE public.\"unified_profiles\" t SET \"email\" = s.\"email\", \"updated_at\" = now() \
             FROM cm_stage_unified_profiles s WHERE t.id = s.id AND ROW(t.\"email\") IS DISTINCT FROM ROW(s.\"email\")"
        );
    }

    #[test]
    fn inserts_only_missing_rows_with_every_staged_column() {
        assert_eq!(
            profiles().insert_sql(),
            "INSERT INTO public.\"unified_profiles\" (\"id\", \"email\", \"tier\", \"updated_at\") \
             SELECT \"id\", \"email\", \"tier\", \"updated_at\" FROM cm_stage_unified_profiles s \
             WHERE NOT EXISTS (SELECT 1 FROM public.\"unified_profiles\" t WHERE t.id = s.id)"
        );
    }

    #[test]
    fn app_owned_columns_are_listed_for_profiles_and_enrollments() {
        let by_table = |t: &str| {
            DESTINATIONS
                .iter()
                .find(|d| d.table == t)
                .unwrap()
                .app_owned
        };
        assert_eq!(
            by_table("unified_profiles"),
            [
                "tier",
                "tier_assignment",
                "tier_assignment_notes",
                "last_active_at"
            ]
        );
        assert_eq!(
            by_table("enrollments"),
            ["progress", "last_activity_at", "completion_date", "notes"]
        );
    }
}
