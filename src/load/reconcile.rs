//! Set-based reconciliation of a table with a complete clean copy of its rows (staged rows for
//! the load, backed-up rows for the rollback), matching on the catalogue's key. The SQL only;
//! [`super::apply`] runs it in foreign-key order.

use super::insert_checks::{Insert, TableChecks};
use crate::sql::ident;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

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
    let rows = crate::pg::query(
        tx,
        "SELECT a.attname::text FROM pg_attribute a \
         WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
           AND a.attgenerated = '' ORDER BY a.attnum",
        &[&qualified],
        &[Type::TEXT],
    )
    .await
    .with_context(|| format!("cannot read the columns of {qualified}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The inserted columns an update compares and writes: in [`UpdateMode::Load`] those the load
/// may overwrite (not the key, the app-owned ones or `updated_at`), in [`UpdateMode::Restore`]
/// every one but the key.
fn update_columns(
    insert_columns: &[String],
    key: &str,
    app_owned: &[String],
    mode: UpdateMode,
) -> Vec<String> {
    insert_columns
        .iter()
        .filter(|c| match mode {
            UpdateMode::Load => crate::catalog::may_overwrite(c, key, app_owned),
            UpdateMode::Restore => c.as_str() != key,
        })
        .cloned()
        .collect()
}

/// The column lists of `target`'s foreign keys, the one whose parent has the most rows (by the
/// planner's estimate) first.
async fn foreign_keys_by_parent_size(
    tx: &Transaction<'_>,
    target: &str,
) -> Result<Vec<Vec<String>>> {
    let rows = crate::pg::query(
        tx,
        "SELECT (SELECT array_agg(a.attname::text ORDER BY k.i) \
                   FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) \
         FROM pg_constraint con JOIN pg_class p ON p.oid = con.confrelid \
         WHERE con.conrelid = $1::text::regclass AND con.contype = 'f' \
         ORDER BY p.reltuples DESC, con.conname",
        &[&target],
        &[Type::TEXT],
    )
    .await
    .with_context(|| format!("cannot read the foreign keys of {target}"))?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// The columns new rows are inserted in the order of: those of the first foreign key (parent
/// with the most rows first) whose columns are all inserted; none when the table has no such
/// key. Rows inserted in that order check their parent through its index in key order, and
/// the table's own index on those columns grows at one end, instead of both being visited at
/// random.
fn insert_order(foreign_keys: Vec<Vec<String>>, insert_columns: &[String]) -> Vec<String> {
    foreign_keys
        .into_iter()
        .find(|cols| cols.iter().all(|c| insert_columns.contains(c)))
        .unwrap_or_default()
}

/// Reconciles `target` with the complete clean rows in `source`, matching on `id`.
pub struct Reconcile {
    pub target: String,
    /// The column rows are matched on.
    pub key: String,
    pub source: String,
    /// Columns written on insert.
    pub insert_columns: Vec<String>,
    /// Columns compared and written on update.
    pub update_columns: Vec<String>,
    /// Columns new rows are inserted in the order of: a foreign key's, so that the parent's
    /// index pages (and the table's own index on them) are visited in order ([`insert_order`]).
    pub insert_order: Vec<String>,
    /// Set `updated_at = now()` on updated rows.
    pub touch_updated_at: bool,
}

impl Reconcile {
    /// `source_columns`: the columns the clean rows carry.
    pub async fn new(
        tx: &Transaction<'_>,
        target: &str,
        key: &str,
        source: &str,
        source_columns: &[String],
        app_owned: &[String],
        mode: UpdateMode,
    ) -> Result<Self> {
        // Both catalogue queries in one round trip (tokio-postgres pipelines them).
        let (table_columns, foreign_keys) = crate::pg::pipelined2(
            writable_columns(tx, target),
            foreign_keys_by_parent_size(tx, target),
        )
        .await?;
        if !source_columns.iter().any(|c| c == key) {
            bail!("the clean rows for {target} have no `{key}` column");
        }
        let insert_columns: Vec<String> = table_columns
            .iter()
            .filter(|c| source_columns.contains(c))
            .cloned()
            .collect();
        let has_updated_at = table_columns.iter().any(|c| c == "updated_at");
        let update_columns = update_columns(&insert_columns, key, app_owned, mode);
        let insert_order = insert_order(foreign_keys, &insert_columns);
        Ok(Self {
            target: target.to_string(),
            key: key.to_string(),
            source: source.to_string(),
            insert_columns,
            update_columns,
            insert_order,
            touch_updated_at: mode == UpdateMode::Load && has_updated_at,
        })
    }

    /// The same reconcile in [`UpdateMode::Restore`]: every inserted column but the key
    /// compared and written, `updated_at` as the clean rows have it. No catalogue lookup.
    pub fn restoring(&self) -> Self {
        Self {
            target: self.target.clone(),
            key: self.key.clone(),
            source: self.source.clone(),
            insert_columns: self.insert_columns.clone(),
            update_columns: update_columns(
                &self.insert_columns,
                &self.key,
                &[],
                UpdateMode::Restore,
            ),
            insert_order: self.insert_order.clone(),
            touch_updated_at: false,
        }
    }

    fn differs(&self) -> String {
        if self.update_columns.is_empty() {
            return "false".into();
        }
        let t: Vec<String> = self
            .update_columns
            .iter()
            .map(|c| format!("t.{}", ident(c)))
            .collect();
        let s: Vec<String> = self
            .update_columns
            .iter()
            .map(|c| format!("s.{}", ident(c)))
            .collect();
        format!(
            "ROW({}) IS DISTINCT FROM ROW({})",
            t.join(", "),
            s.join(", ")
        )
    }

    /// SQL: update the rows whose compared columns differ.
    pub fn update_sql(&self) -> String {
        self.update_sql_where("true")
    }

    /// SQL: update the rows whose compared columns differ and that meet `condition` (on the
    /// table's alias `t`).
    pub fn update_sql_where(&self, condition: &str) -> String {
        let mut sets: Vec<String> = self
            .update_columns
            .iter()
            .map(|c| format!("{q} = s.{q}", q = ident(c)))
            .collect();
        if self.touch_updated_at {
            sets.push("\"updated_at\" = now()".into());
        }
        format!(
            "UPDATE {target} t SET {sets} FROM {source} s WHERE t.{k} = s.{k} AND {differs}{extra}",
            extra = if condition == "true" {
                String::new()
            } else {
                format!(" AND ({condition})")
            },
            k = ident(&self.key),
            target = self.target,
            source = self.source,
            sets = sets.join(", "),
            differs = self.differs()
        )
    }

    /// SQL: insert the clean rows that are missing.
    pub fn insert_sql(&self) -> String {
        let cols: Vec<String> = self.insert_columns.iter().map(|c| ident(c)).collect();
        let cols = cols.join(", ");
        let order = if self.insert_order.is_empty() {
            String::new()
        } else {
            let by: Vec<String> = self
                .insert_order
                .iter()
                .map(|c| format!("s.{}", ident(c)))
                .collect();
            format!(" ORDER BY {}", by.join(", "))
        };
        format!(
            "INSERT INTO {target} ({cols}) SELECT {cols} FROM {source} s \
             WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{k} = s.{k}){order}",
            k = ident(&self.key),
            target = self.target,
            source = self.source,
        )
    }

    /// SQL: count clean rows whose row in the table differs (0 after a correct reconcile).
    pub fn mismatch_sql(&self) -> String {
        format!(
            "SELECT count(*) FROM {source} s WHERE NOT EXISTS (SELECT 1 FROM {target} t \
             WHERE t.{k} = s.{k} AND NOT ({differs}))",
            k = ident(&self.key),
            target = self.target,
            source = self.source,
            differs = self.differs()
        )
    }

    #[tracing::instrument(name = "update", skip_all, fields(table = %self.target))]
    pub async fn update(&self, tx: &Transaction<'_>) -> Result<u64> {
        self.update_where(tx, "true").await
    }

    /// [`Reconcile::update`] restricted to the rows that meet `condition` (alias `t`).
    pub async fn update_where(&self, tx: &Transaction<'_>, condition: &str) -> Result<u64> {
        crate::pg::execute(tx, &self.update_sql_where(condition), &[], &[])
            .await
            .with_context(|| format!("cannot update {}", self.target))
    }

    /// Insert the clean rows that are missing, their foreign keys checked as `checks` (this
    /// table's, from [`super::insert_checks::InsertChecks::table`]) says.
    #[tracing::instrument(name = "insert", skip_all, fields(table = %self.target))]
    pub async fn insert(&self, tx: &Transaction<'_>, checks: &TableChecks) -> Result<u64> {
        let sql = self.insert_sql();
        let insert = Insert {
            target: &self.target,
            sql: &sql,
        };
        checks.insert(tx, &insert).await
    }

    pub async fn mismatches(&self, tx: &Transaction<'_>) -> Result<i64> {
        Ok(crate::pg::query_one(tx, &self.mismatch_sql(), &[], &[])
            .await?
            .get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles() -> Reconcile {
        Reconcile {
            target: "public.\"unified_profiles\"".into(),
            key: "id".into(),
            source: "cm_stage_unified_profiles".into(),
            insert_columns: vec![
                "id".into(),
                "email".into(),
                "tier".into(),
                "updated_at".into(),
            ],
            update_columns: vec!["email".into()],
            insert_order: Vec::new(),
            touch_updated_at: true,
        }
    }

    #[test]
    fn updates_touch_only_rows_that_differ_and_set_updated_at_with_them() {
        // Guards idempotence: a second load updates nothing and moves no timestamp.
        assert_eq!(
            profiles().update_sql(),
            "UPDATE public.\"unified_profiles\" t SET \"email\" = s.\"email\", \"updated_at\" = now() \
             FROM cm_stage_unified_profiles s WHERE t.\"id\" = s.\"id\" AND ROW(t.\"email\") IS DISTINCT FROM ROW(s.\"email\")"
        );
    }

    #[test]
    fn inserts_only_missing_rows_with_every_staged_column() {
        assert_eq!(
            profiles().insert_sql(),
            "INSERT INTO public.\"unified_profiles\" (\"id\", \"email\", \"tier\", \"updated_at\") \
             SELECT \"id\", \"email\", \"tier\", \"updated_at\" FROM cm_stage_unified_profiles s \
             WHERE NOT EXISTS (SELECT 1 FROM public.\"unified_profiles\" t WHERE t.\"id\" = s.\"id\")"
        );
    }

    #[test]
    fn inserts_in_the_order_of_a_foreign_key_when_the_table_has_one() {
        let r = Reconcile {
            insert_order: vec!["user_id".into(), "course_id".into()],
            ..profiles()
        };
        assert!(r
            .insert_sql()
            .ends_with("WHERE t.\"id\" = s.\"id\") ORDER BY s.\"user_id\", s.\"course_id\""));
    }
}
