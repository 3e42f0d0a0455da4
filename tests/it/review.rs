//! Review: the page rendered from the demo in a real headless Chromium (no request, no console
//! error, headline numbers equal to checks.json and the reconciliation, every section), and
//! `explain` on the rule fixtures.

use cleanmig::review::explain::{explain, ExplainFormat, ExplainOptions, Explanation};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const PIPELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline");

/// The Chromium binary: `$CLEANMIG_CHROMIUM`, else `chromium` on the PATH. Missing is a
/// failure, not a skip.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CLEANMIG_CHROMIUM") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the review page test needs Chromium and none was found: run `make setup` \
             (installs Debian's chromium) or set CLEANMIG_CHROMIUM"
        )
    })
}

/// Headless Chromium on `page` with a fresh profile; returns (stdout, stderr).
fn run_chromium(page: &Path, extra: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {stderr}");
    (stdout, stderr)
}

/// Lines of Chromium's log that say the page logged an error or tried to load something.
fn page_problems(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Content Security Policy")
                || l.contains("Refused to")
                || l.contains("Uncaught")
                || l.contains("net::ERR_")
        })
        .map(String::from)
        .collect()
}

/// HTML that could make the browser load anything: external tags, any `src`, links other
/// than in-page anchors, CSS imports and URLs, and network APIs in scripts.
fn network_references(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut found = Vec::new();
    for needle in [
        "<link",
        "<iframe",
        "<img",
        "<object",
        "<embed",
        "<audio",
        "<video",
        "<source",
        " src=",
        "@import",
        "url(",
        "fetch(",
        "xmlhttprequest",
        "websocket",
        "sendbeacon",
        "eventsource",
        "<base",
    ] {
        if lower.contains(needle) {
            found.push(needle.to_string());
        }
    }
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("href=\"") {
        rest = &rest[i + 6..];
        if !rest.starts_with('#') {
            found.push(format!("href=\"{}", &rest[..rest.len().min(40)]));
        }
    }
    found
}

/// `data-value` of the element with `id` in serialized HTML.
fn data_value(dom: &str, id: &str) -> f64 {
    let marker = format!("id=\"{id}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no element #{id} in the page"));
    let tag_end = at + dom[at..].find('>').unwrap();
    let tag = &dom[at..tag_end];
    let start = tag
        .find("data-value=\"")
        .unwrap_or_else(|| panic!("#{id} has no data-value"))
        + 12;
    let value = &tag[start..start + tag[start..].find('"').unwrap()];
    value
        .parse()
        .unwrap_or_else(|_| panic!("#{id} data-value `{value}` is not a number"))
}

/// The value in the row of a report.md table whose first cell is `first` (column `col`,
/// 0-based, first cell included), as a number.
fn report_value(report: &str, first: &str, col: usize) -> f64 {
    let line = report
        .lines()
        .find(|l| l.split('|').nth(1).is_some_and(|c| c.trim() == first))
        .unwrap_or_else(|| panic!("report.md has no row `{first}`"));
    let cell = line
        .split('|')
        .nth(col + 1)
        .unwrap()
        .trim()
        .replace(',', "");
    cell.parse()
        .unwrap_or_else(|_| panic!("report.md row `{first}` column {col}: `{cell}`"))
}

#[tokio::test]
async fn review_page_of_the_demo_renders_in_headless_chromium() {
    let url = crate::support::fresh_database("review_demo").await;
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("ground_truth.json");
    crate::support::demo_extract_transform(dir.path(), &url, &truth, false);
    let stage = dir.path().join("stage");
    let page = stage.join("review.html");
    let html = std::fs::read_to_string(&page).expect("transform writes stage/review.html");

    // Private, bounded, self-contained.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&page).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "review.html holds PII: owner-only");
    assert!(
        html.len() < 3 * 1024 * 1024,
        "page is {} bytes at scale 1",
        html.len()
    );
    assert_eq!(
        network_references(&html),
        Vec::<String>::new(),
        "the page may load nothing"
    );
    assert!(
        html.contains("Content-Security-Policy"),
        "the page forbids loading anything"
    );

    // `cleanmig review` renders the same bytes from the artifacts alone.
    let out = crate::support::cleanmig(dir.path())
        .arg("review")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "review: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        page.display().to_string()
    );
    assert!(
        std::fs::read_to_string(&page).unwrap() == html,
        "cleanmig review must render the same bytes as transform"
    );

    // The browser: scripts ran, nothing was requested or logged.
    let (dom, stderr) = run_chromium(&page, &["--dump-dom"]);
    assert_eq!(
        page_problems(&stderr),
        Vec::<String>::new(),
        "chromium log:\n{stderr}"
    );
    assert!(dom.contains("data-script=\"ran\""), "the page's script ran");
    for section in [
        "verdict",
        "flow",
        "checks",
        "changes",
        "plots",
        "rejects",
        "suspicious",
    ] {
        assert!(
            dom.contains(&format!("data-section=\"{section}\"")),
            "section {section} missing"
        );
    }
    assert!(dom.matches("<svg").count() >= 7, "every plot is drawn");

    // Headline numbers = checks.json and the reconciliation.
    let checks: Value =
        serde_json::from_slice(&std::fs::read(stage.join("checks.json")).unwrap()).unwrap();
    let blocking_failed = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["severity"] == "blocking" && c["passed"] == false);
    assert!(
        dom.contains(&format!("data-go=\"{}\"", !blocking_failed)),
        "the verdict follows checks.json"
    );
    for c in checks["checks"].as_array().unwrap() {
        let row = format!(
            "data-check=\"{}\" data-passed=\"{}\"",
            c["name"].as_str().unwrap(),
            c["passed"]
        );
        assert!(
            dom.contains(&row),
            "check {} on the page as in checks.json",
            c["name"]
        );
    }
    let report = std::fs::read_to_string(stage.join("report.md")).unwrap();
    let expect = [
        ("h-customers", report_value(&report, "= customers", 1)),
        (
            "h-profiles_kept",
            report_value(&report, "unified_profiles", 2)
                + report_value(&report, "unified_profiles", 3),
        ),
        (
            "h-profiles_deleted",
            report_value(&report, "unified_profiles", 4),
        ),
        (
            "h-profiles_new",
            report_value(&report, "unified_profiles", 5),
        ),
        ("h-logins_to_create", report_value(&report, "auth.users", 5)),
        ("h-transactions", report_value(&report, "transactions", 7)),
        ("h-enrollments", report_value(&report, "enrollments", 7)),
        (
            "h-amount_php",
            report_value(&report, "course", 4) + report_value(&report, "ebook", 4),
        ),
    ];
    for (id, want) in expect {
        let got = data_value(&dom, id);
        assert!(
            (got - want).abs() < 0.005,
            "{id}: page {got}, reconciliation {want}"
        );
        assert!(
            want > 0.0 || id == "h-profiles_new",
            "{id} is zero on the demo"
        );
    }
    let rejects_total = data_value(&dom, "rejects-table-total");
    let rejects_rows = crate::support::read_parquet(&stage.join("rejects.parquet"))
        .iter()
        .map(|b| b.num_rows())
        .sum::<usize>();
    assert_eq!(
        rejects_total as usize, rejects_rows,
        "rejects total on the page"
    );

    // A screenshot for a human to look at.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("review.png");
    let _ = std::fs::remove_file(&shot);
    let (_, stderr) = run_chromium(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,4000",
            "--hide-scrollbars",
        ],
    );
    assert_eq!(
        page_problems(&stderr),
        Vec::<String>::new(),
        "chromium log:\n{stderr}"
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    eprintln!("review page screenshot: {}", shot.display());
}

/// Guards the page checks above: a page that logs an error and tries to load an image is
/// caught, both in its HTML and in Chromium's log.
#[test]
fn a_page_that_requests_or_logs_an_error_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\
         </head><body><img src=\"https://example.invalid/x.png\">\
         <script>console.error('broken page');</script></body></html>",
    )
    .unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(network_references(&html).contains(&"<img".to_string()));
    let (_, stderr) = run_chromium(&page, &["--dump-dom"]);
    let problems = page_problems(&stderr).join("\n");
    assert!(
        problems.contains("broken page"),
        "console error seen: {stderr}"
    );
    assert!(
        problems.contains("Content Security Policy") || problems.contains("Refused to"),
        "blocked request seen: {stderr}"
    );
}

async fn explain_fixture(dir: &Path, email: Option<&str>, key: Option<&str>) -> Explanation {
    explain(&ExplainOptions {
        artifacts: dir.to_path_buf(),
        pipeline: PathBuf::from(PIPELINE),
        email: email.map(String::from),
        key: key.map(String::from),
        format: ExplainFormat::Json,
    })
    .await
    .unwrap()
}

fn column<'a>(rows: &'a [serde_json::Map<String, Value>], name: &str) -> Vec<&'a Value> {
    rows.iter().map(|r| &r[name]).collect()
}

#[tokio::test]
async fn explain_a_customer_with_two_payments_and_a_merged_contact() {
    let dir = crate::transform::transformed().await;
    // Any case and spacing finds the person.
    let e = explain_fixture(dir.path(), Some("  ALICE@example.com "), None).await;
    assert_eq!(e.email.as_deref(), Some("alice@example.com"));
    // Xendit: inv-1 twice (the SETTLED row kept, the PAID one merged into it) and inv-10.
    let x = e.rows("xendit_rows");
    assert_eq!(
        column(x, "source_row"),
        [&Value::from(1), &Value::from(2), &Value::from(11)]
    );
    assert_eq!(column(x, "outcome"), ["merged", "kept", "kept"]);
    assert_eq!(x[0]["reason"], "same External ID as row 2");
    // systemeio: the older contact with the same email is merged into the kept one.
    let c = e.rows("systemeio_rows");
    assert_eq!(column(c, "outcome"), ["kept", "merged"]);
    assert_eq!(c[1]["reason"], "same email as row 1");
    // The profile keeps its id; its last name changes from the contact.
    let p = e.rows("profile");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["id"], "a0000000-0000-0000-0000-00000000a11c");
    assert_eq!(
        p[0]["id_from"],
        "kept from the existing unified_profiles row"
    );
    assert_eq!(p[0]["change"], "update");
    assert!(e.changes.iter().any(|c| c.table == "unified_profiles"
        && c.column == "last_name"
        && c.old == "Old"
        && c.new == "Santos"));
    // Two transactions: the existing one keeps its id, the new one's is derived.
    let t = e.rows("transactions");
    assert_eq!(column(t, "payment_provider_id"), ["inv-1", "inv-10"]);
    assert!(t[0]["id_from"].as_str().unwrap().starts_with("kept"));
    assert!(t[1]["id_from"].as_str().unwrap().starts_with("derived"));
    assert_eq!(t[1]["change"], "insert");
    // She keeps her progress.
    let en = e.rows("enrollments");
    assert_eq!(en.len(), 1);
    assert_eq!(en[0]["progress"], en[0]["current_progress"]);
    assert!(en[0]["id_from"].as_str().unwrap().starts_with("kept"));
    // The text form names every step.
    let text = cleanmig::review::explain::render_text(&e);
    assert!(text.contains("same External ID as row 2"), "{text}");
    assert!(text.contains("last_name: Old -> Santos"), "{text}");
}

#[tokio::test]
async fn explain_a_tag_only_student() {
    let dir = crate::transform::transformed().await;
    let e = explain_fixture(dir.path(), Some("gina@example.com"), None).await;
    assert!(e.rows("xendit_rows").is_empty(), "no payment");
    assert_eq!(column(e.rows("systemeio_rows"), "outcome"), ["kept"]);
    let p = e.rows("profile");
    assert_eq!(p[0]["id_from"], "derived: uuid_v5(email)");
    assert_eq!(p[0]["change"], "insert");
    assert_eq!(
        column(e.rows("auth_user"), "status"),
        ["new: created by the load (id = the profile id)"]
    );
    assert!(e.rows("transactions").is_empty());
    let en = e.rows("enrollments");
    assert_eq!(en.len(), 1);
    assert_eq!(
        en[0]["transaction_id"],
        Value::Null,
        "enrolled without a transaction"
    );
    assert_eq!(en[0]["change"], "insert");
}

#[tokio::test]
async fn explain_a_rejected_payment_by_its_key() {
    let dir = crate::transform::transformed().await;
    let e = explain_fixture(dir.path(), None, Some("inv-4")).await;
    assert_eq!(e.email.as_deref(), Some("carol@example.com"));
    let x = e.rows("xendit_rows");
    let by_key: Vec<(&Value, &Value, &Value)> = x
        .iter()
        .map(|r| (&r["external_id"], &r["outcome"], &r["reason"]))
        .collect();
    assert!(
        by_key.contains(&(
            &Value::from("inv-4"),
            &Value::from("rejected"),
            &Value::from("amount not positive")
        )),
        "{by_key:?}"
    );
    assert!(e.rows("profile").is_empty(), "carol is not a customer");
    assert!(e.rows("transactions").is_empty());
}

#[tokio::test]
async fn explain_a_test_account_lists_its_deletes() {
    let dir = crate::transform::transformed().await;
    let e = explain_fixture(dir.path(), Some("test1@test.com"), None).await;
    let d = e.rows("deletes");
    assert_eq!(
        column(d, "destination_table"),
        ["unified_profiles", "transactions", "enrollments"]
    );
    // Unknown people are an error that says so.
    let err = explain(&ExplainOptions {
        artifacts: dir.path().to_path_buf(),
        pipeline: PathBuf::from(PIPELINE),
        email: Some("nobody@example.com".into()),
        key: None,
        format: ExplainFormat::Text,
    })
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("nobody@example.com"), "{err:#}");
}

/// The approval covers the page: the reviewer approves what they saw, so a page changed after
/// approval stops the load.
#[tokio::test]
async fn the_approval_covers_the_review_page() {
    let dir = crate::transform::transformed().await;
    let out = crate::support::cleanmig(dir.path())
        .args(["approve", "--by", "reviewer"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "approve: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let approval = cleanmig::approve::Approval::read(dir.path()).unwrap();
    assert!(approval.files.contains_key("stage/review.html"));
    approval.verify(dir.path()).unwrap();
    let page = dir.path().join("stage/review.html");
    let mut html = std::fs::read_to_string(&page).unwrap();
    html.push_str("<!-- edited -->");
    std::fs::write(&page, html).unwrap();
    let err = approval.verify(dir.path()).unwrap_err();
    assert!(format!("{err:#}").contains("stage/review.html"), "{err:#}");
}

#[tokio::test]
async fn explain_from_the_command_line_in_both_formats() {
    let dir = crate::transform::transformed().await;
    let out = crate::support::cleanmig(dir.path())
        .args(["explain", "--key", "inv-9", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["email"], "frank@example.com");
    let out = crate::support::cleanmig(dir.path())
        .args(["explain", "Frank@Example.com"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Ma. Luisa"), "{text}");
    assert!(text.contains("not paid (status EXPIRED)"), "{text}");
    // Neither an email nor a key is a usage error.
    let out = crate::support::cleanmig(dir.path())
        .arg("explain")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_verdict_says_stop_until_a_failing_check_is_accepted_with_its_reason() {
    let dir = crate::transform::fixture_artifacts();
    let pipeline = dir.path().join("pipeline");
    crate::transform::copy_dir(Path::new(PIPELINE), &pipeline);
    std::fs::write(
        pipeline.join("checks/planted_failure.sql"),
        "-- A planted failure: no profile may exist.\n-- severity: blocking\nSELECT id, email FROM profiles\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        crate::support::cleanmig(dir.path())
            .env("CLEANMIG_PIPELINE", &pipeline)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["transform"]);
    assert!(!out.status.success(), "the planted check fails transform");
    let page = dir.path().join("stage/review.html");
    let html = std::fs::read_to_string(&page).expect("the page is written when checks fail");
    assert!(html.contains("data-go=\"false\""), "verdict: stop");
    assert!(html.contains("planted_failure"));

    let reason = "planted for this test; the fixture has profiles";
    let out = run(&[
        "approve",
        "--accept",
        "planted_failure",
        "--reason",
        reason,
        "--by",
        "reviewer",
    ]);
    assert!(
        out.status.success(),
        "approve: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["review"]);
    assert!(
        out.status.success(),
        "review: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("data-go=\"true\""),
        "verdict: go, with the accepted check"
    );
    assert!(
        html.contains(reason),
        "the accepted check's reason is on the page"
    );
}
