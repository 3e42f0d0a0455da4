//! The catalogue: the one place that knows the destination tables.
//!
//! The business-owned facts live in the pipeline folder, beside the rules that fill the tables:
//! `pipeline/destinations.csv` (one row per table, in foreign-key order: a table comes after
//! every table it references) and `pipeline/added_columns.csv` (columns the load adds when a
//! table lacks them). Everything else is derived here: artifact names, temporary tables, delete
//! sets, backup tables, the extract list, the transform outputs, the diffs, the drift keys and
//! the reconcile order.
//!
//! The catalogue travels with the data: extract records the one it used in its manifest,
//! transform copies it into the stage manifest (which the approval covers), and the load and
//! its backup use that copy. Editing the CSV files therefore takes effect from the next extract.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The destination tables, relative to the pipeline directory.
pub const DESTINATIONS_CSV: &str = "destinations.csv";
/// The columns the load adds, relative to the pipeline directory.
pub const ADDED_COLUMNS_CSV: &str = "added_columns.csv";

/// What the load does with a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// The staged rows are the table's complete clean contents: insert, update, delete.
    Reconcile,
    /// The staged rows are created when missing; existing rows are never changed (auth).
    Create,
    /// Extracted for the rules to read; the load does not write it.
    Read,
}

/// A column the load adds to a table that lacks it (`ALTER TABLE ... ADD COLUMN IF NOT EXISTS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedColumn {
    pub name: String,
    /// The Postgres type as `format_type()` writes it (`integer`, `timestamp with time zone`).
    pub pg_type: String,
    /// SQL default expression, if any (`'xendit'`, `now()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// One destination table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// Stem of the staged artifact (`stage/<artifact>.parquet`) and of the pipeline file that
    /// produces it; `None` for tables the load only reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    pub load: LoadMode,
    /// The column that identifies a row (reconcile matches on it).
    pub key: String,
    /// Columns whose set of values must not change between extraction and load.
    pub drift_key: Vec<String>,
    /// Columns the live app maintains: never written on an existing row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_owned: Vec<String>,
    /// Columns the load adds when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_columns: Vec<AddedColumn>,
}

impl Table {
    /// `auth.users`, as people write it (for messages).
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `"auth"."users"`, for SQL.
    pub fn qualified(&self) -> String {
        crate::sql::qualified(&self.schema, &self.name)
    }

    /// Stem of the extracted artifact: public tables keep their name, others are prefixed
    /// with their schema (`auth_users`).
    pub fn extract_artifact(&self) -> String {
        extract_artifact_name(&self.schema, &self.name)
    }

    /// Stem of the staged artifact. Only for tables with one.
    pub fn stage_artifact(&self) -> &str {
        self.artifact.as_deref().unwrap_or_default()
    }

    /// The temporary table the load copies the staged rows into.
    pub fn temp(&self) -> String {
        format!("cm_stage_{}", self.extract_artifact())
    }

    /// The temporary table of the keys the load deletes.
    pub fn delete_set(&self) -> String {
        format!("cm_delete_{}", self.extract_artifact())
    }

    /// The table in a run's backup schema that holds this table's rows before the run.
    pub fn backup_table(&self) -> String {
        self.extract_artifact()
    }

    /// Whether a load may overwrite this column of an existing row ([`may_overwrite`]). The
    /// extract's row hashes and the rollback's conflict check cover these columns.
    pub fn may_overwrite(&self, column: &str) -> bool {
        may_overwrite(column, &self.key, &self.app_owned)
    }

    pub fn is_reconciled(&self) -> bool {
        self.load == LoadMode::Reconcile
    }
}

/// Whether a load may overwrite `column` of an existing row of a table with this key and
/// these app-owned columns: not the key, not `updated_at` (set to now() with any change), not a
/// column the app owns. The reconcile writes exactly these on update.
pub fn may_overwrite(column: &str, key: &str, app_owned: &[String]) -> bool {
    column != key && column != "updated_at" && !app_owned.iter().any(|c| c == column)
}

/// `auth.users` -> `auth_users`; public tables keep their name. The name becomes a file name,
/// so it is encoded ([`file_stem`]).
pub fn extract_artifact_name(schema: &str, table: &str) -> String {
    if schema == "public" {
        file_stem(table)
    } else {
        format!("{}_{}", file_stem(schema), file_stem(table))
    }
}

/// A table name as a file stem that cannot leave its directory or be taken for another name:
/// lower-case letters, digits and `_` stay; every other byte is written `%XX`
/// (`O'Brien.Notes` -> `%4F%27%42rien%2E%4Eotes`). Distinct names give distinct stems.
pub fn file_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every destination table, in foreign-key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub tables: Vec<Table>,
}

impl Catalog {
    /// Read `destinations.csv` and `added_columns.csv` from the pipeline directory.
    pub fn read(pipeline: &Path) -> Result<Self> {
        let path = pipeline.join(DESTINATIONS_CSV);
        let mut tables = Vec::new();
        for (line, fields) in read_csv(&path, 6)? {
            let at = || format!("{} line {line}", path.display());
            let (schema, name) = split_table(&fields[0]).with_context(at)?;
            let load = match fields[2].as_str() {
                "reconcile" => LoadMode::Reconcile,
                "create" => LoadMode::Create,
                "read" => LoadMode::Read,
                other => bail!(
                    "{}: load must be reconcile, create or read, not `{other}`",
                    at()
                ),
            };
            let artifact = Some(fields[1].clone()).filter(|a| !a.is_empty());
            if load != LoadMode::Read && artifact.is_none() {
                bail!("{}: a table the load writes needs an artifact name", at());
            }
            if fields[3].is_empty() || fields[3].contains('|') {
                bail!("{}: key must be one column", at());
            }
            tables.push(Table {
                schema,
                name,
                artifact,
                load,
                key: fields[3].clone(),
                drift_key: list(&fields[4]),
                app_owned: list(&fields[5]),
                added_columns: Vec::new(),
            });
        }
        let added = pipeline.join(ADDED_COLUMNS_CSV);
        if added.exists() {
            for (line, fields) in read_csv(&added, 4)? {
                let at = || format!("{} line {line}", added.display());
                let (schema, name) = split_table(&fields[0]).with_context(at)?;
                let table = tables
                    .iter_mut()
                    .find(|t| t.schema == schema && t.name == name)
                    .with_context(|| {
                        format!("{}: {} is not in {DESTINATIONS_CSV}", at(), fields[0])
                    })?;
                if crate::pg_arrow::kind_of_type_name(&fields[2]).is_none() {
                    bail!("{}: unsupported column type `{}`", at(), fields[2]);
                }
                table.added_columns.push(AddedColumn {
                    name: fields[1].clone(),
                    pg_type: fields[2].clone(),
                    default: Some(fields[3].clone()).filter(|d| !d.is_empty()),
                });
            }
        }
        let catalog = Self { tables };
        catalog
            .validate()
            .with_context(|| path.display().to_string())?;
        Ok(catalog)
    }

    fn validate(&self) -> Result<()> {
        for (i, t) in self.tables.iter().enumerate() {
            let later = &self.tables[i + 1..];
            if later.iter().any(|o| o.display() == t.display()) {
                bail!("{} is listed twice", t.display());
            }
            if let Some(a) = &t.artifact {
                if later.iter().any(|o| o.artifact.as_ref() == Some(a)) {
                    bail!("artifact `{a}` is listed twice");
                }
                if !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    bail!("artifact `{a}`: use letters, digits and _ only (it names files)");
                }
            }
            if t.drift_key.is_empty() {
                bail!("{}: drift_key is empty", t.display());
            }
        }
        Ok(())
    }

    /// The table written as `schema.name`.
    pub fn get(&self, display: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.display() == display)
    }

    /// The table whose staged artifact is `artifact`.
    pub fn by_artifact(&self, artifact: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.artifact.as_deref() == Some(artifact))
    }

    /// The table a qualified, quoted name (`"auth"."users"`) stands for.
    pub fn by_qualified(&self, qualified: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.qualified() == qualified)
    }

    /// Tables the load reconciles, parents first.
    pub fn reconciled(&self) -> impl DoubleEndedIterator<Item = &Table> {
        self.tables.iter().filter(|t| t.is_reconciled())
    }

    /// Tables with a staged artifact, in order.
    pub fn staged(&self) -> impl Iterator<Item = &Table> {
        self.tables.iter().filter(|t| t.artifact.is_some())
    }

    /// `schema.name` of the reconciled tables (for `= ANY($1)` in catalogue queries).
    pub fn reconciled_names(&self) -> Vec<String> {
        self.reconciled().map(Table::display).collect()
    }
}

/// The source column aliases, relative to the pipeline directory.
pub const SOURCE_COLUMNS: &str = "source_columns.csv";

/// One canonical column of a source table, from the alias table.
#[derive(Debug, Clone)]
pub struct CanonicalColumn {
    pub name: String,
    pub required: bool,
    /// Accepted names besides `name`, as written in the alias table.
    pub aliases: Vec<String>,
}

/// The alias table: canonical columns per source table, in order.
pub fn read_source_columns(pipeline: &Path) -> Result<BTreeMap<String, Vec<CanonicalColumn>>> {
    let path = pipeline.join(SOURCE_COLUMNS);
    let mut out: BTreeMap<String, Vec<CanonicalColumn>> = BTreeMap::new();
    for (line, fields) in read_csv(&path, 4)
        .with_context(|| format!("cannot read the source column aliases {}", path.display()))?
    {
        let required = match fields[2].as_str() {
            "yes" | "true" => true,
            "no" | "false" | "" => false,
            other => bail!(
                "{} line {line}: required must be yes or no, not `{other}`",
                path.display()
            ),
        };
        out.entry(fields[0].clone())
            .or_default()
            .push(CanonicalColumn {
                name: fields[1].clone(),
                required,
                aliases: fields[3]
                    .split('|')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            });
    }
    Ok(out)
}

fn split_table(s: &str) -> Result<(String, String)> {
    match s.split_once('.') {
        Some((schema, name)) if !schema.is_empty() && !name.is_empty() => {
            Ok((schema.to_string(), name.to_string()))
        }
        _ => bail!("table `{s}` must be written schema.table"),
    }
}

fn list(s: &str) -> Vec<String> {
    s.split('|')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// The data lines of a small CSV file (header skipped, `#` comments and blank lines ignored),
/// each with its line number and at least `columns` trimmed fields.
pub fn read_csv(path: &Path, columns: usize) -> Result<Vec<(usize, Vec<String>)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields: Vec<String> = split_csv_line(line)
            .into_iter()
            .map(|f| f.trim().to_string())
            .collect();
        if fields.len() + 1 == columns {
            fields.push(String::new());
        }
        if fields.len() < columns {
            bail!(
                "{} line {}: expected {columns} fields, found {}",
                path.display(),
                n + 1,
                fields.len()
            );
        }
        out.push((n + 1, fields));
    }
    Ok(out)
}

/// Split one CSV line, honouring double quotes.
pub fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> Catalog {
        Catalog::read(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline"))).unwrap()
    }

    #[test]
    fn the_pipeline_catalogue_lists_the_destination_tables_in_foreign_key_order() {
        let c = repo();
        let reconciled: Vec<String> = c.reconciled().map(Table::display).collect();
        assert_eq!(
            reconciled,
            [
                "public.unified_profiles",
                "public.transactions",
                "public.enrollments"
            ]
        );
        let profiles = c.by_artifact("profiles").unwrap();
        assert_eq!(profiles.temp(), "cm_stage_unified_profiles");
        assert_eq!(profiles.extract_artifact(), "unified_profiles");
        assert_eq!(
            profiles.app_owned,
            [
                "tier",
                "tier_assignment",
                "tier_assignment_notes",
                "last_active_at"
            ]
        );
        let users = c.get("auth.users").unwrap();
        assert_eq!(users.extract_artifact(), "auth_users");
        assert_eq!(users.drift_key, ["id", "email"]);
        let tx = c.get("public.transactions").unwrap();
        assert_eq!(tx.added_columns.len(), 6);
        assert_eq!(tx.added_columns[0].default.as_deref(), Some("'xendit'"));
        assert_eq!(c.get("public.courses").unwrap().load, LoadMode::Read);
    }

    #[test]
    fn file_stems_stay_in_their_directory_and_keep_names_apart() {
        assert_eq!(file_stem("unified_profiles"), "unified_profiles");
        assert_eq!(file_stem("../x"), "%2E%2E%2Fx");
        assert_eq!(file_stem("a.b"), "a%2Eb");
        assert_ne!(file_stem("Ab"), file_stem("ab"));
        assert!(!file_stem("a/b\\c\0d").contains(['/', '\\', '\0', '.']));
    }

    #[test]
    fn csv_lines_with_quotes() {
        assert_eq!(
            split_csv_line(r#"xendit,payment_id,no,"invoice id|""id"""#),
            vec!["xendit", "payment_id", "no", "invoice id|\"id\""]
        );
    }

    #[test]
    fn a_bad_catalogue_names_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DESTINATIONS_CSV),
            "table,artifact,load,key,drift_key,app_owned\npublic.x,x,upsert,id,id,\n",
        )
        .unwrap();
        let err = format!("{:#}", Catalog::read(dir.path()).unwrap_err());
        assert!(err.contains("destinations.csv line 2"), "{err}");
        assert!(err.contains("`upsert`"), "{err}");
    }
}
