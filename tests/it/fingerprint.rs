//! Table fingerprints: any change to a source row shows; row order does not.

use crate::support;
use cleanmig::fingerprint::{compute, Coverage};

#[tokio::test]
async fn whole_row_fingerprints_see_every_change_but_not_row_order() {
    let url = support::fresh_database("fingerprint").await;
    let client = support::connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE s (id int PRIMARY KEY, name text, doc json, at timestamptz, span interval);
             INSERT INTO s VALUES (1, 'a', '{\"x\": 1}', '2024-01-01', '1 day'), (2, NULL, NULL, NULL, NULL);",
        )
        .await
        .unwrap();
    let keys = vec!["id".to_string()];
    let whole = |c| async move {
        compute(c, "public.s", Coverage::WholeRow, &[])
            .await
            .unwrap()
    };
    let first = whole(&client).await;
    assert_eq!(first.rows, 2);

    // Same rows in another physical order: same fingerprint.
    client
        .batch_execute("CREATE TABLE s2 AS SELECT * FROM s ORDER BY id DESC; DROP TABLE s; ALTER TABLE s2 RENAME TO s;")
        .await
        .unwrap();
    assert_eq!(whole(&client).await, first);

    // A value changes, in a json column too: the whole-row fingerprint changes, the key one does not.
    let keys_before = compute(&client, "public.s", Coverage::Keys, &keys)
        .await
        .unwrap();
    client
        .batch_execute("UPDATE s SET doc = '{\"x\": 2}' WHERE id = 1")
        .await
        .unwrap();
    assert_ne!(whole(&client).await, first);
    assert_eq!(
        compute(&client, "public.s", Coverage::Keys, &keys)
            .await
            .unwrap(),
        keys_before
    );

    // A row more: both change.
    client
        .batch_execute("INSERT INTO s (id) VALUES (3)")
        .await
        .unwrap();
    let keys_after = compute(&client, "public.s", Coverage::Keys, &keys)
        .await
        .unwrap();
    assert_ne!(keys_after, keys_before);
    assert_eq!(keys_after.rows, 3);

    let err = compute(&client, "public.s", Coverage::Keys, &["nope".to_string()])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("public.s has no column nope"),
        "{err}"
    );
}
