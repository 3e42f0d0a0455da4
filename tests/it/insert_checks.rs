//! The load's inserts that check their foreign keys once per statement, with the row triggers
//! off: they must refuse what the triggers refuse, lock what the triggers lock, and keep every
//! other trigger.

use cleanmig::load::insert_checks::{Insert, InsertChecks};
use tokio_postgres::Client;

/// A parent with rows 1..=3, a child referencing it, and clean rows to insert into the child
/// (`clean`), in a fresh database; returns the superuser's client.
async fn parent_and_child(prefix: &str, clean: &str) -> (String, Client) {
    let url = crate::support::fresh_database(prefix).await;
    let client = crate::support::connect(&url).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE parent (id int PRIMARY KEY); \
             INSERT INTO parent SELECT generate_series(1, 3); \
             CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent); \
             CREATE TABLE clean (id int, parent_id int); \
             INSERT INTO clean VALUES {clean}"
        ))
        .await
        .unwrap();
    (url, client)
}

const SQL: &str =
    "INSERT INTO child SELECT * FROM clean s WHERE NOT EXISTS (SELECT 1 FROM child t WHERE t.id = s.id)";

fn child_insert() -> Insert<'static> {
    Insert {
        target: "public.child",
        sql: SQL,
    }
}

#[tokio::test]
async fn a_new_row_without_its_parent_is_refused_whichever_way_its_key_is_checked() {
    // Guards the per-statement check: it refuses the insert the row trigger would refuse,
    // naming the key, the parent and a value. The superuser may set session_replication_role,
    // so the per-statement path runs (Postgres's own refusal reads differently).
    let (_, mut client) =
        parent_and_child("insert_checks_missing", "(1, 1), (2, NULL), (3, 9)").await;
    let tx = client.transaction().await.unwrap();
    let checks = InsertChecks::probe(&tx).await.unwrap();
    assert!(checks.per_statement());
    let table = checks.table(&tx, "public.child").await.unwrap();
    let err = table.insert(&tx, &child_insert()).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(
            "rows to insert into public.child that reference no row of public.parent: 1 \
             (foreign key child_parent_id_fkey; for example parent_id = 9)"
        ),
        "{message}"
    );
    drop(tx);
    assert_eq!(count(&client, "SELECT count(*) FROM child").await, 0);

    // Row by row, Postgres refuses the same row.
    let tx = client.transaction().await.unwrap();
    let table = InsertChecks::per_row()
        .table(&tx, "public.child")
        .await
        .unwrap();
    let err = table.insert(&tx, &child_insert()).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("violates foreign key constraint \"child_parent_id_fkey\""),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_parent_row_a_new_row_references_cannot_be_deleted_until_the_load_ends() {
    // Guards the parents' locks: the row trigger locks each referenced parent row until the
    // transaction ends; without that, another session could delete a parent the check found
    // (its own foreign-key check cannot see the load's uncommitted rows) and the load would
    // commit a child without its parent.
    let (url, mut client) = parent_and_child("insert_checks_locks", "(1, 1), (2, 2)").await;
    let tx = client.transaction().await.unwrap();
    let checks = InsertChecks::probe(&tx).await.unwrap();
    let table = checks.table(&tx, "public.child").await.unwrap();
    assert_eq!(table.insert(&tx, &child_insert()).await.unwrap(), 2);
    let other = crate::support::connect(&url).await;
    other
        .batch_execute("SET lock_timeout = '300ms'")
        .await
        .unwrap();
    let err = other
        .batch_execute("DELETE FROM parent WHERE id = 2")
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("lock timeout"), "{err:?}");
    // A parent no new row references is free.
    other
        .batch_execute("DELETE FROM parent WHERE id = 3")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM child").await, 2);
}

#[tokio::test]
async fn a_table_whose_inserts_fire_a_trigger_of_its_own_keeps_its_triggers() {
    // Guards the choice of tables: an insert trigger that is not a foreign key's check (an
    // app's audit, a sign-up hook) still fires for every row, and so do the key checks.
    let (_, mut client) = parent_and_child("insert_checks_trigger", "(1, 1), (2, 9)").await;
    client
        .batch_execute(
            "CREATE TABLE audit (child_id int); \
             CREATE FUNCTION audit_child() RETURNS trigger LANGUAGE plpgsql AS \
               $$ BEGIN INSERT INTO audit VALUES (new.id); RETURN new; END $$; \
             CREATE TRIGGER audit_child AFTER INSERT ON child \
               FOR EACH ROW EXECUTE FUNCTION audit_child()",
        )
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let checks = InsertChecks::probe(&tx).await.unwrap();
    assert!(checks.per_statement());
    let table = checks.table(&tx, "public.child").await.unwrap();
    let err = table.insert(&tx, &child_insert()).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("violates foreign key constraint"),
        "{err:#}"
    );
    drop(tx);
    client
        .batch_execute("DELETE FROM clean WHERE id = 2")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let checks = InsertChecks::probe(&tx).await.unwrap();
    let table = checks.table(&tx, "public.child").await.unwrap();
    assert_eq!(table.insert(&tx, &child_insert()).await.unwrap(), 1);
    tx.commit().await.unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM audit").await, 1);
}

#[tokio::test]
async fn a_role_that_may_not_set_the_replication_role_checks_row_by_row_and_goes_on() {
    // Guards the probe: a refused SET leaves the transaction usable, and the inserts keep
    // their triggers.
    let (_, mut client) = parent_and_child("insert_checks_probe", "(1, 1)").await;
    client
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE cleanmig_plain_role; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
             GRANT ALL ON parent, child, clean TO cleanmig_plain_role",
        )
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL ROLE cleanmig_plain_role")
        .await
        .unwrap();
    let checks = InsertChecks::probe(&tx).await.unwrap();
    assert!(!checks.per_statement());
    let table = checks.table(&tx, "public.child").await.unwrap();
    assert_eq!(table.insert(&tx, &child_insert()).await.unwrap(), 1);
    tx.commit().await.unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM child").await, 1);
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}
