//! `cleanmig demo-data`: the seed's figures at scale 1 in both source shapes, determinism, and a
//! ground truth that agrees with the data when the business rules are applied to it in SQL.

use crate::support;
use cleanmig::tools::demo_data::{generate, DemoOptions};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use tokio_postgres::Client;

async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The source tables in canonical column names, with the rules of issue 3 applied in SQL
/// (independently of the generator), as temporary views `x` (xendit) and `s` (systemeio).
async fn rule_views(client: &Client, legacy: bool) {
    let (x, s) = if legacy {
        (
            r#"SELECT "External ID" AS external_id, upper(trim("Status")) AS status, "Description" AS description,
                      "Amount"::numeric AS amount, lower(trim(coalesce("Customer Email", "Email"))) AS email FROM xendit"#,
            r#"SELECT lower(trim("Email")) AS email, "Tag" AS tags FROM systemeio"#,
        )
    } else {
        (
            "SELECT external_id, upper(trim(status)) AS status, description, amount, lower(trim(customer_email)) AS email FROM xendit",
            "SELECT lower(trim(email)) AS email, tags FROM systemeio",
        )
    };
    let valid = r"~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'";
    client
        .batch_execute(&format!(
            "CREATE TEMP VIEW x AS SELECT *, email {valid} AS valid,
                CASE WHEN description ILIKE '%papers to profits%' THEN 'p2p'
                     WHEN description ILIKE '%canva%' THEN 'canva' ELSE 'other' END AS product,
                status IN ('PAID', 'SETTLED') AS paid
             FROM ({x}) r;
             CREATE TEMP VIEW s AS SELECT *, email {valid} AS valid,
                EXISTS (SELECT 1 FROM unnest(string_to_array(tags, ',')) t
                        WHERE lower(replace(t, ' ', '')) = 'paidp2p') AS tagged
             FROM ({s}) r;
             CREATE TEMP VIEW customers AS
                SELECT email FROM s WHERE tagged AND valid
                UNION SELECT email FROM x WHERE paid AND product = 'p2p' AND valid AND amount > 0;
             CREATE TEMP VIEW clean_payments AS
                SELECT DISTINCT external_id FROM x WHERE paid AND product IN ('p2p', 'canva') AND valid AND amount > 0;"
        ))
        .await
        .unwrap();
}

fn as_set(v: &Value) -> HashSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

async fn ids(client: &Client, sql: &str) -> HashSet<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// Scale 1 reproduces the seed's figures and the ground truth agrees with the rules.
async fn scale_one(legacy: bool) {
    let url = support::fresh_database(if legacy {
        "demo_legacy"
    } else {
        "demo_canonical"
    })
    .await;
    let client = support::connect(&url).await;
    let truth = generate(
        &client,
        &DemoOptions {
            scale: 1.0,
            seed: 42,
            legacy,
        },
    )
    .await
    .unwrap();
    let gt = truth.to_value().unwrap();

    // The seed's figures, counted the way the seed counted them.
    let (status, description, tags) = if legacy {
        (r#""Status""#, r#""Description""#, r#""Tag""#)
    } else {
        ("status", "description", "tags")
    };
    let figures = [
        ("SELECT count(*) FROM xendit".to_string(), 8_828),
        (
            format!("SELECT count(*) FROM xendit WHERE {status} IN ('PAID', 'SETTLED') AND {description} LIKE '%Papers to Profits%'"),
            3_216,
        ),
        ("SELECT count(*) FROM systemeio".to_string(), 14_942),
        (format!("SELECT count(*) FROM systemeio WHERE {tags} LIKE '%PaidP2P%'"), 3_542),
        ("SELECT count(*) FROM unified_profiles".to_string(), 3_546),
        ("SELECT count(*) FROM auth.users".to_string(), 3_552),
        ("SELECT count(*) FROM transactions".to_string(), 3_335),
        ("SELECT count(*) FROM enrollments".to_string(), 2_870),
        ("SELECT count(*) FROM purchase_leads".to_string(), 38),
        ("SELECT count(*) FROM ebook_contacts".to_string(), 7),
        ("SELECT count(*) FROM auth.identities".to_string(), 3_552),
        (
            "SELECT count(*) FROM courses WHERE slug = 'papers-to-profits' AND title = 'Papers to Profits'".to_string(),
            1,
        ),
    ];
    for (sql, want) in &figures {
        assert_eq!(count(&client, sql).await, *want, "{sql}");
    }
    for (table, n) in gt["source_rows"].as_object().unwrap() {
        let got = count(&client, &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(got, n.as_i64().unwrap(), "source_rows.{table}");
    }

    // auth.users rows look like Supabase's own.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM auth.users WHERE instance_id <> '00000000-0000-0000-0000-000000000000'
               OR aud <> 'authenticated' OR role <> 'authenticated' OR confirmation_token IS NULL
               OR recovery_token IS NULL OR email_change_token_new IS NULL OR email_change IS NULL
               OR raw_app_meta_data->>'provider' <> 'email' OR created_at IS NULL
               OR NOT EXISTS (SELECT 1 FROM auth.identities i WHERE i.user_id = users.id AND i.provider = 'email')"
        )
        .await,
        0
    );

    // The ground truth's counts follow from the data by the rules.
    rule_views(&client, legacy).await;
    let counts = &gt["counts"];
    let c = |k: &str| counts[k].as_i64().unwrap_or_else(|| panic!("counts.{k}"));
    assert_eq!(
        count(&client, "SELECT count(*) FROM customers").await,
        c("customers")
    );
    assert_eq!(
        gt["customers"].as_array().unwrap().len() as i64,
        c("customers")
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM clean_payments").await,
        c("transactions")
    );
    assert_eq!(
        gt["transactions"].as_array().unwrap().len() as i64,
        c("transactions")
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM x WHERE paid AND product IN ('p2p', 'canva') AND (NOT valid OR amount <= 0)").await,
        c("rejected_xendit")
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM s WHERE tagged AND NOT valid").await,
        c("rejected_systemeio")
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM customers WHERE email NOT IN (SELECT lower(email) FROM auth.users)").await,
        c("auth_users_to_create")
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM customers c WHERE NOT EXISTS
               (SELECT 1 FROM x WHERE x.email = c.email AND paid AND product = 'p2p' AND valid AND amount > 0)"
        )
        .await,
        c("enrollments_without_payment")
    );
    let keep = "('ops@paperstoprofits.ph')";
    let deleted = ids(
        &client,
        &format!(
            "SELECT id::text FROM unified_profiles WHERE lower(email) NOT IN (SELECT email FROM customers)
               AND tier IS DISTINCT FROM 'admin' AND lower(email) NOT IN {keep}"
        ),
    )
    .await;
    assert_eq!(deleted, as_set(&gt["delete_profile_ids"]));
    assert_eq!(deleted.len() as i64, c("profiles_to_delete"));
    let kept: HashSet<String> = gt["kept_profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    let kept_db = ids(
        &client,
        &format!(
            "SELECT id::text FROM unified_profiles WHERE lower(email) NOT IN (SELECT email FROM customers)
               AND (tier = 'admin' OR lower(email) IN {keep})"
        ),
    )
    .await;
    assert_eq!(kept, kept_db);
    let tx_deleted = ids(
        &client,
        "SELECT id::text FROM transactions WHERE payment_provider_id IS NULL
           OR payment_provider_id NOT IN (SELECT external_id FROM clean_payments)",
    )
    .await;
    assert_eq!(tx_deleted, as_set(&gt["delete_transaction_ids"]));
    let enr_deleted = ids(
        &client,
        "SELECT e.id::text FROM enrollments e JOIN auth.users u ON u.id = e.user_id
          WHERE lower(u.email) NOT IN (SELECT email FROM customers)",
    )
    .await;
    assert_eq!(enr_deleted, as_set(&gt["delete_enrollment_ids"]));
    // Test accounts have rows pointing at them, so a careless delete collides.
    let collide = count(
        &client,
        "SELECT (SELECT count(*) FROM user_tags t JOIN unified_profiles p ON p.id = t.user_id WHERE p.email LIKE '%test%' OR p.email LIKE 'dev+%')
              + (SELECT count(*) FROM lesson_progress l JOIN unified_profiles p ON p.id = l.user_id WHERE p.email LIKE '%test%' OR p.email LIKE 'dev+%')",
    )
    .await;
    assert!(collide > 0);

    // Existing auth ids, transaction ids and enrollment ids are the ones in the database.
    let auth: HashMap<String, String> = client
        .query("SELECT lower(email), id::text FROM auth.users", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for cust in gt["customers"].as_array().unwrap() {
        let email = cust["email"].as_str().unwrap();
        assert_eq!(
            auth.get(email).map(String::as_str),
            cust["auth_user_id"].as_str(),
            "{email}"
        );
    }
    let existing_tx: HashMap<String, String> = client
        .query("SELECT payment_provider_id, id::text FROM transactions WHERE payment_provider_id IS NOT NULL", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for t in gt["transactions"].as_array().unwrap() {
        let ext = t["external_id"].as_str().unwrap();
        assert_eq!(
            existing_tx.get(ext).map(String::as_str),
            t["existing_id"].as_str(),
            "{ext}"
        );
    }
    let enrollments: HashMap<String, (String, String, Option<String>)> = client
        .query(
            "SELECT lower(u.email), e.id::text, e.progress::text, t.payment_provider_id
               FROM enrollments e JOIN auth.users u ON u.id = e.user_id
               LEFT JOIN transactions t ON t.id = e.transaction_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let mut with_progress = 0;
    for e in gt["enrollments"].as_array().unwrap() {
        let email = e["email"].as_str().unwrap();
        match enrollments.get(email) {
            Some((id, progress, ext)) => {
                assert_eq!(Some(id.as_str()), e["existing_id"].as_str(), "{email}");
                assert_eq!(Some(progress.as_str()), e["progress"].as_str(), "{email}");
                if let Some(ext) = ext {
                    assert_eq!(
                        Some(ext.as_str()),
                        e["transaction_external_id"].as_str(),
                        "{email}"
                    );
                }
                with_progress += (progress != "0") as usize;
            }
            None => assert!(e["existing_id"].is_null(), "{email}"),
        }
    }
    assert!(with_progress > 100);
    // Paid twice: two transactions, and the enrollment is linked to the earliest.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM (SELECT email FROM x WHERE paid AND product = 'p2p' AND valid AND amount > 0
               GROUP BY email HAVING count(DISTINCT external_id) = 2) t"
        )
        .await,
        gt["planted"]["paid_twice"].as_i64().unwrap()
    );

    // Every planted kind is there.
    let planted = gt["planted"].as_object().unwrap();
    for (k, v) in planted {
        if legacy || !["text_amounts", "customer_email_missing"].contains(&k.as_str()) {
            assert!(v.as_i64().unwrap() > 0, "planted.{k} is 0");
        }
    }
    assert_eq!(
        count(
            &client,
            &format!(
                "SELECT count(*) FROM xendit WHERE {status} = '{}'",
                if legacy { "UNPAID" } else { "PENDING" }
            )
        )
        .await,
        planted["unpaid_rows"].as_i64().unwrap()
    );
    assert_eq!(
        count(
            &client,
            &format!("SELECT count(*) FROM xendit WHERE {status} = 'EXPIRED'")
        )
        .await,
        planted["expired_rows"].as_i64().unwrap()
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM x WHERE paid AND product = 'canva'"
        )
        .await,
        planted["canva_paid"].as_i64().unwrap()
    );
    if legacy {
        assert_eq!(
            count(
                &client,
                r#"SELECT count(*) FROM xendit WHERE "Fee" ~ '[,₱]' OR "Received Amount" ~ '[,₱]'"#
            )
            .await,
            planted["text_amounts"].as_i64().unwrap()
        );
        assert!(
            count(
                &client,
                r#"SELECT count(*) FROM xendit WHERE "Paid Timestamp" = ''"#
            )
            .await
                > 0
        );
        let zones = ids(&client, r#"SELECT DISTINCT "Timezone" FROM xendit"#).await;
        assert_eq!(zones.len(), 4, "{zones:?}");
    }
    let email_col = if legacy {
        r#"coalesce("Customer Email", "Email")"#
    } else {
        "customer_email"
    };
    let semail_col = if legacy { r#""Email""# } else { "email" };
    assert_eq!(
        count(
            &client,
            &format!(
                "SELECT (SELECT count(*) FROM xendit WHERE trim({email_col}) <> lower(trim({email_col})))
                      + (SELECT count(*) FROM systemeio WHERE trim({semail_col}) <> lower(trim({semail_col})))"
            )
        )
        .await,
        planted["mixed_case_emails"].as_i64().unwrap()
    );
    assert_eq!(
        count(
            &client,
            &format!(
                "SELECT (SELECT count(*) FROM xendit WHERE {email_col} <> trim({email_col}))
                      + (SELECT count(*) FROM systemeio WHERE {semail_col} <> trim({semail_col}))"
            )
        )
        .await,
        planted["padded_emails"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn scale_one_canonical_has_the_seed_figures_and_a_consistent_ground_truth() {
    scale_one(false).await;
}

#[tokio::test]
async fn scale_one_legacy_has_the_seed_figures_and_a_consistent_ground_truth() {
    scale_one(true).await;
}

async fn table_digests(client: &Client) -> BTreeMap<String, String> {
    let tables = [
        "xendit",
        "systemeio",
        "auth.users",
        "auth.identities",
        "courses",
        "unified_profiles",
        "transactions",
        "enrollments",
        "user_tags",
        "purchase_leads",
        "ebook_contacts",
        "lesson_progress",
    ];
    let mut out = BTreeMap::new();
    for t in tables {
        let digest: String = client
            .query_one(
                &format!("SELECT coalesce(md5(string_agg(r::text, E'\\n' ORDER BY r::text)), '') FROM {t} r"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        out.insert(t.to_string(), digest);
    }
    out
}

/// Guards determinism: the same seed gives the same rows and the same ground truth, and both
/// source shapes describe the same people and payments.
#[tokio::test]
async fn same_seed_same_data_and_shapes_agree() {
    let opts = DemoOptions {
        scale: 0.05,
        seed: 7,
        legacy: false,
    };
    let mut digests = Vec::new();
    let mut truths = Vec::new();
    for legacy in [false, false, true] {
        let url = support::fresh_database("demo_det").await;
        let client = support::connect(&url).await;
        let truth = generate(
            &client,
            &DemoOptions {
                legacy,
                ..opts.clone()
            },
        )
        .await
        .unwrap();
        digests.push(table_digests(&client).await);
        truths.push(truth.to_value().unwrap());
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(truths[0], truths[1]);
    assert_ne!(digests[0]["xendit"], digests[2]["xendit"]);
    for key in [
        "customers",
        "transactions",
        "enrollments",
        "counts",
        "delete_profile_ids",
        "kept_profiles",
    ] {
        assert_eq!(
            truths[0][key], truths[2][key],
            "{key} differs between shapes"
        );
    }
    // Another seed gives other data.
    let url = support::fresh_database("demo_det").await;
    let client = support::connect(&url).await;
    generate(&client, &DemoOptions { seed: 8, ..opts })
        .await
        .unwrap();
    assert_ne!(table_digests(&client).await["xendit"], digests[0]["xendit"]);
}

#[test]
fn command_prints_a_summary_per_table_and_writes_a_private_ground_truth() {
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(support::fresh_database("demo_cli"));
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("demo/ground_truth.json");
    let out = support::cleanmig(&dir.path().join("artifacts"))
        .env("DATABASE_URL", &url)
        .args([
            "demo-data",
            "--scale",
            "0.05",
            "--legacy",
            "--seed",
            "3",
            "--ground-truth",
        ])
        .arg(&truth)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for table in [
        "xendit",
        "systemeio",
        "auth.users",
        "unified_profiles",
        "transactions",
        "enrollments",
    ] {
        assert!(
            stderr.contains(&format!("demo-data {table}: ")),
            "{table} missing in:\n{stderr}"
        );
    }
    let mode = std::fs::metadata(&truth).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let gt: Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    assert_eq!(gt["legacy"], Value::Bool(true));
    assert_eq!(gt["seed"], 3);

    // A second run into the same database refuses instead of mixing data.
    let again = support::cleanmig(&dir.path().join("artifacts"))
        .env("DATABASE_URL", &url)
        .args(["demo-data", "--scale", "0.05", "--ground-truth"])
        .arg(&truth)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty database"));
}
