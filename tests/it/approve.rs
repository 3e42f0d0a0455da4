//! `cleanmig approve`: what gets frozen and when it refuses.

use crate::load_fixture::fixture_with_checks;
use crate::support;

#[tokio::test]
async fn approve_refuses_a_failing_blocking_check_until_it_is_accepted_with_a_reason() {
    // Guards: a failing blocking check cannot be approved silently; accepting it is recorded.
    let fx = fixture_with_checks(
        "approve_blocking",
        &[
            ("unique_emails", "blocking", true, 0),
            ("every_profile_has_auth_user", "blocking", false, 3),
            ("names_present", "warning", false, 7),
        ],
    )
    .await;
    let approve = |args: &[&str]| {
        support::cleanmig(&fx.artifacts)
            .arg("approve")
            .args(args)
            .output()
            .unwrap()
    };

    let out = approve(&["--by", "ana"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("every_profile_has_auth_user (3 failing rows)"),
        "{err}"
    );
    assert!(err.contains("--accept"), "{err}");
    assert!(!fx.artifacts.join("approved.json").exists());

    let out = approve(&["--accept", "every_profile_has_auth_user"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));

    let out = approve(&["--accept", "names_present", "--reason", "x"]);
    assert!(
        !out.status.success(),
        "a warning is not a failing blocking check"
    );

    let out = approve(&[
        "--by",
        "ana",
        "--accept",
        "every_profile_has_auth_user",
        "--reason",
        "three staff accounts, handled by hand",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let approval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.artifacts.join("approved.json")).unwrap())
            .unwrap();
    assert_eq!(approval["approved_by"], "ana");
    assert_eq!(
        approval["accepted"][0]["name"],
        "every_profile_has_auth_user"
    );
    assert_eq!(
        approval["accepted"][0]["reason"],
        "three staff accounts, handled by hand"
    );
    assert_eq!(approval["checks"].as_array().unwrap().len(), 3);
    let files = approval["files"].as_object().unwrap();
    for f in [
        "stage/manifest.json",
        "stage/profiles.parquet",
        "stage/transactions.parquet",
        "stage/enrollments.parquet",
        "stage/auth_users.parquet",
        "stage/checks.json",
        "extract/manifest.json",
        "extract/unified_profiles.parquet",
        "extract/unified_profiles.row_hashes.parquet",
    ] {
        assert_eq!(files[f].as_str().unwrap().len(), 64, "{f} in {files:?}");
    }
    let extract: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.artifacts.join("extract/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(approval["fingerprint"], extract["fingerprint"]);
    // stdout: the approval's own sha256, for the runbook.
    let sha = String::from_utf8(out.stdout).unwrap();
    assert_eq!(sha.trim().len(), 64);
}
