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

/// The digest is over the exact sum of the row hashes, however far past 64 bits it runs: a
/// sum that wrapped or rounded would let two different tables share a fingerprint more often
/// than the hash allows, and would change the digest of every extract made before.
#[tokio::test]
async fn a_fingerprint_digests_the_exact_sum_of_its_row_hashes() {
    use sha2::{Digest, Sha256};
    let url = support::fresh_database("fingerprint_sum").await;
    let client = support::connect(&url).await;
    // Rows whose hashes are all positive, so that their sum runs past 64 bits.
    client
        .batch_execute(
            "CREATE TABLE s (id int PRIMARY KEY, name text);
             INSERT INTO s SELECT n, 'name ' || n FROM generate_series(1, 2000) AS n
             WHERE hash_record_extended(ROW(n, 'name ' || n), 0) > 0;",
        )
        .await
        .unwrap();
    let fp = compute(&client, "public.s", Coverage::WholeRow, &[])
        .await
        .unwrap();

    let hashes: Vec<i64> = client
        .query(
            "SELECT hash_record_extended(ROW(t.id, t.name), 0) FROM public.s t",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let exact: i128 = hashes.iter().map(|&h| i128::from(h)).sum();
    assert!(
        exact > i128::from(i64::MAX) || exact < i128::from(i64::MIN),
        "the test's rows must sum past 64 bits to tell an exact sum from a wrapped one: {exact}"
    );
    assert_eq!(fp.rows, hashes.len() as u64);
    assert_eq!(
        fp.digest,
        hex::encode(Sha256::digest(
            format!("{}:{exact}", hashes.len()).as_bytes()
        ))
    );
}
