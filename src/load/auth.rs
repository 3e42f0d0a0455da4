//! Logins: the auth users and identities the staged data needs and the database lacks. The
//! load only creates them; an existing login is never changed or removed.

use super::insert_checks::{Insert, InsertChecks};
use super::reconcile::writable_columns;
use super::stage::Staged;
use crate::catalog::Catalog;
use crate::sql::{ident, ident_list};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use tokio_postgres::Transaction;

/// The auth tables the load creates rows in.
const USERS: &str = "auth.users";
const IDENTITIES: &str = "auth.identities";

/// Remember the ids of the existing logins, for the validation that none changed.
pub async fn remember_existing(tx: &Transaction<'_>) -> Result<()> {
    tx.batch_execute(
        "CREATE TEMP TABLE cm_auth_users_before ON COMMIT DROP AS SELECT id FROM auth.users; \
         CREATE TEMP TABLE cm_auth_identities_before ON COMMIT DROP AS SELECT id FROM auth.identities; \
         ANALYZE cm_auth_users_before; ANALYZE cm_auth_identities_before",
    )
    .await
    .context("cannot read the existing auth users")
}

/// Create the staged auth users and identities that do not exist yet; the ids of created users
/// go to the backup schema. Returns (users, identities) created.
pub async fn create(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    staged: &BTreeMap<String, Staged>,
    backup: &str,
    checks: &InsertChecks,
) -> Result<(u64, u64)> {
    let Some(users) = catalog
        .get(USERS)
        .and_then(|t| staged.get(t.stage_artifact()))
        .filter(|s| !s.columns.is_empty())
    else {
        return Ok((0, 0));
    };
    let identities = catalog
        .get(IDENTITIES)
        .and_then(|t| staged.get(t.stage_artifact()))
        .filter(|s| !s.columns.is_empty());
    // Identities may be staged without `id` (the table's default makes one).
    let identity_columns = identities.map(|ids| {
        let mut with_id = ids.columns.clone();
        if !with_id.iter().any(|c| c == "id") {
            with_id.push("id".into());
        }
        with_id
    });
    // The check, both tables' columns and how the identities' foreign key is checked, asked at
    // once (pipelined), then both inserts.
    let ((), ((user_cols, identity_cols), identity_checks)) = crate::pg::pipelined2(
        refuse_email_conflicts(tx, &users.temp),
        crate::pg::pipelined2(
            crate::pg::pipelined2(insert_columns(tx, USERS, users, &users.columns), async {
                match (identities, &identity_columns) {
                    (Some(ids), Some(with_id)) => {
                        Ok(Some(insert_columns(tx, IDENTITIES, ids, with_id).await?))
                    }
                    _ => Ok(None),
                }
            }),
            async {
                match identities {
                    Some(_) => checks.table(tx, IDENTITIES).await,
                    None => Ok(Default::default()),
                }
            },
        ),
    )
    .await?;
    let create_users = format!(
        "WITH created AS (INSERT INTO auth.users ({cols}) SELECT {cols} FROM {t} s \
               WHERE NOT EXISTS (SELECT 1 FROM auth.users u WHERE u.id = s.id) RETURNING id) \
             INSERT INTO {b}.created_auth_users SELECT id FROM created",
        cols = user_cols,
        t = ident(&users.temp),
        b = ident(backup)
    );
    // Identities the database lacks; their foreign key to the users is checked as `checks`
    // says (the users are inserted first, so it finds them).
    let create_identities = identities.zip(identity_cols).map(|(ids, cols)| {
        format!(
            "INSERT INTO {IDENTITIES} ({cols}) SELECT {cols} FROM {t} s \
             WHERE NOT EXISTS (SELECT 1 FROM auth.identities i \
                               WHERE i.provider = s.provider AND i.provider_id = s.provider_id)",
            t = ident(&ids.temp)
        )
    });
    // Users first: the server runs the statements in the order sent.
    crate::pg::pipelined2(
        async {
            crate::pg::execute(tx, &create_users, &[], &[])
                .await
                .context("cannot create the auth users")
        },
        async {
            match &create_identities {
                Some(sql) => identity_checks
                    .insert(
                        tx,
                        &Insert {
                            target: IDENTITIES,
                            sql,
                        },
                    )
                    .await
                    .context("cannot create the auth identities"),
                None => Ok(0),
            }
        },
    )
    .await
}

/// An email that already has an auth user under another id is a conflict to resolve, not
/// something to paper over.
async fn refuse_email_conflicts(tx: &Transaction<'_>, temp: &str) -> Result<()> {
    let sql = format!(
        "SELECT s.email::text || ' (staged ' || s.id::text || ', existing ' || u.id::text || ')' \
         FROM {} s JOIN auth.users u ON lower(u.email) = lower(s.email) AND u.id <> s.id \
         ORDER BY 1 LIMIT 5",
        ident(temp)
    );
    let conflicts = crate::pg::query(tx, &sql, &[], &[]).await?;
    if !conflicts.is_empty() {
        bail!(
            "auth users to create already exist under another id: {}; re-run `cleanmig extract`, `cleanmig transform` and `cleanmig approve`",
            conflicts.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

/// The staged columns the table can take, in table order, quoted and joined.
async fn insert_columns(
    tx: &Transaction<'_>,
    table: &str,
    staged: &Staged,
    columns: &[String],
) -> Result<String> {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let qualified = crate::sql::qualified(schema, name);
    if !columns.iter().any(|c| c == "id") {
        bail!("the staged rows for {qualified} have no `id` column");
    }
    let cols: Vec<String> = writable_columns(tx, &qualified)
        .await?
        .into_iter()
        .filter(|c| columns.contains(c) && staged.columns.contains(c))
        .collect();
    Ok(ident_list("", &cols))
}
