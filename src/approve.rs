//! Approve: freeze exactly what was reviewed into `artifacts/approved.json`.
//!
//! The approval records the SHA-256 of every staged file (and of the extract files the load
//! reads), the extract fingerprint, the check results, the failing blocking checks that were
//! accepted and why, who approved and when. `load` refuses anything that differs from it.

use crate::artifacts::{self, Manifest, APPROVAL, EXTRACT_DIR, MANIFEST, STAGE_DIR};
use crate::error::Refusal;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the checks written by transform, inside the stage directory.
pub const CHECKS: &str = "checks.json";
/// Files of the stage directory covered by the approval besides those its manifest lists.
const STAGE_EXTRAS: [&str; 3] = [CHECKS, "report.md", crate::review::PAGE];

/// `stage/checks.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checks {
    pub checks: Vec<Check>,
}

/// One check of `stage/checks.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    /// `blocking` or `warning`.
    pub severity: String,
    pub passed: bool,
    #[serde(default)]
    pub failing_rows: u64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub sample: Vec<serde_json::Value>,
}

impl Check {
    pub fn is_blocking(&self) -> bool {
        self.severity.eq_ignore_ascii_case("blocking")
    }
}

/// A check result as recorded in the approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub severity: String,
    pub passed: bool,
    pub failing_rows: u64,
}

/// A failing blocking check that the approver accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedCheck {
    pub name: String,
    pub failing_rows: u64,
    pub reason: String,
}

/// `artifacts/approved.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub tool_version: String,
    pub approved_at: String,
    pub approved_by: String,
    /// The extract's snapshot time and fingerprint the staged data was computed from.
    pub extracted_at: String,
    pub fingerprint: String,
    /// SHA-256 per file, keyed by its path relative to the artifacts directory
    /// (`stage/profiles.parquet`, `stage/manifest.json`, `extract/manifest.json`, ...).
    pub files: BTreeMap<String, String>,
    pub checks: Vec<CheckResult>,
    #[serde(default)]
    pub accepted: Vec<AcceptedCheck>,
}

impl Approval {
    /// Read `artifacts/approved.json`; a missing file is [`Refusal::NotApproved`].
    pub fn read(artifacts_dir: &Path) -> Result<Self> {
        let path = artifacts_dir.join(APPROVAL);
        if !path.exists() {
            return Err(Refusal::NotApproved {
                path: path.display().to_string(),
            }
            .into());
        }
        artifacts::read_json(&path)
    }

    /// Check every approved file against the disk; the first difference is
    /// [`Refusal::ArtifactModified`] naming the file.
    pub fn verify(&self, artifacts_dir: &Path) -> Result<()> {
        self.verify_each(artifacts_dir, |file| self.verify_file(artifacts_dir, file))
    }

    /// [`Approval::verify`], with each approved file (its path relative to the artifacts
    /// directory) checked by `check`, in the approval's order.
    pub fn verify_each(
        &self,
        artifacts_dir: &Path,
        mut check: impl FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        for file in self.files.keys() {
            check(file)?;
        }
        // Files that appeared in the stage directory's manifest after approval.
        let stage = Manifest::read(&artifacts_dir.join(STAGE_DIR))?;
        for entry in stage.artifacts.values() {
            let rel = format!("{STAGE_DIR}/{}", entry.file);
            if !self.files.contains_key(&rel) {
                return Err(Refusal::ArtifactModified { artifact: rel }.into());
            }
        }
        Ok(())
    }

    /// Check one approved file (`stage/profiles.parquet`) against the disk.
    pub fn verify_file(&self, artifacts_dir: &Path, file: &str) -> Result<()> {
        let path = artifacts_dir.join(file);
        let actual = if path.exists() {
            artifacts::sha256_file(&path)?
        } else {
            "missing".to_string()
        };
        if self.files.get(file) != Some(&actual) {
            return Err(Refusal::ArtifactModified {
                artifact: file.to_string(),
            }
            .into());
        }
        Ok(())
    }
}

/// SHA-256 of `approved.json` itself: the approval's identity in the operation log.
pub fn approval_sha256(artifacts_dir: &Path) -> Result<String> {
    artifacts::sha256_file(&artifacts_dir.join(APPROVAL))
}

/// The files an approval covers, with their SHA-256, after checking that the stage directory
/// agrees with its own manifest and with the extract it says it came from.
pub fn collect_files(
    artifacts_dir: &Path,
    stage: &Manifest,
    extract: &Manifest,
) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let stage_dir = artifacts_dir.join(STAGE_DIR);
    for entry in stage.artifacts.values() {
        artifacts::check_relative(&entry.file)?;
        let path = stage_dir.join(&entry.file);
        let sha = artifacts::sha256_file(&path)?;
        if sha != entry.sha256 {
            bail!(
                "{STAGE_DIR}/{} does not match {STAGE_DIR}/{MANIFEST} (sha256 differs); re-run `cleanmig transform`",
                entry.file
            );
        }
        files.insert(format!("{STAGE_DIR}/{}", entry.file), sha);
    }
    for extra in STAGE_EXTRAS.iter().chain([&MANIFEST]) {
        let path = stage_dir.join(extra);
        if path.exists() {
            files.insert(
                format!("{STAGE_DIR}/{extra}"),
                artifacts::sha256_file(&path)?,
            );
        }
    }
    // The load reads the extract's manifest (fingerprints, key columns), the extracted
    // destination tables (to name rows gained or lost since extraction) and their row hashes
    // (to tell whether a value it overwrites changed since).
    let extract_dir = artifacts_dir.join(EXTRACT_DIR);
    files.insert(
        format!("{EXTRACT_DIR}/{MANIFEST}"),
        artifacts::sha256_file(&extract_dir.join(MANIFEST))?,
    );
    for table in extract.tables.values().filter(|t| t.role == "destination") {
        let hashes = table.row_hashes.as_ref().map(|h| &h.artifact);
        for artifact in std::iter::once(&table.artifact).chain(hashes) {
            let Some(entry) = extract.artifacts.get(artifact) else {
                continue;
            };
            artifacts::check_relative(&entry.file)?;
            let path = extract_dir.join(&entry.file);
            files.insert(
                format!("{EXTRACT_DIR}/{}", entry.file),
                artifacts::sha256_file(&path)?,
            );
        }
    }
    Ok(files)
}

/// Who approves, and which failing blocking checks they accept and why.
#[derive(Debug, Clone, Default)]
pub struct ApproveOptions {
    /// Failing blocking checks accepted by name.
    pub accept: Vec<String>,
    /// Why the accepted checks may fail (required with `accept`).
    pub reason: Option<String>,
    /// Who approves.
    pub by: Option<String>,
}

#[tracing::instrument(name = "approve", skip_all)]
pub async fn run(artifacts_dir: &Path, args: &ApproveOptions) -> Result<()> {
    let approval = approve(artifacts_dir, args)?;
    let failing = approval.checks.iter().filter(|c| !c.passed).count();
    tracing::info!(
        "approve: {} files frozen, {} checks ({} failing, {} accepted), by {} at {}; written to {}",
        approval.files.len(),
        approval.checks.len(),
        failing,
        approval.accepted.len(),
        approval.approved_by,
        approval.approved_at,
        artifacts_dir.join(APPROVAL).display()
    );
    println!("{}", approval_sha256(artifacts_dir)?);
    Ok(())
}

/// Write `approved.json` for what is on disk now, or refuse.
pub fn approve(artifacts_dir: &Path, args: &ApproveOptions) -> Result<Approval> {
    let stage_dir = artifacts_dir.join(STAGE_DIR);
    let extract_dir = artifacts_dir.join(EXTRACT_DIR);
    if !stage_dir.join(MANIFEST).exists() {
        bail!(
            "nothing to approve: {} is missing; run `cleanmig transform` first",
            stage_dir.join(MANIFEST).display()
        );
    }
    let stage = Manifest::read(&stage_dir)?;
    let extract = Manifest::read(&extract_dir)
        .context("the approval covers the extract too; run `cleanmig extract` first")?;
    if stage.fingerprint != extract.fingerprint {
        bail!(
            "{STAGE_DIR}/{MANIFEST} was computed from another extract (fingerprint {} vs {}); re-run `cleanmig transform`",
            stage.fingerprint,
            extract.fingerprint
        );
    }
    let checks: Checks = artifacts::read_json(&stage_dir.join(CHECKS))?;

    if !args.accept.is_empty() && args.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        bail!("--accept needs --reason \"why these checks may fail\"");
    }
    for name in &args.accept {
        match checks.checks.iter().find(|c| &c.name == name) {
            None => bail!(
                "--accept {name}: no such check in {STAGE_DIR}/{CHECKS} (checks: {})",
                checks
                    .checks
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(c) if c.passed || !c.is_blocking() => bail!(
                "--accept {name}: that check is not a failing blocking check; nothing to accept"
            ),
            Some(_) => {}
        }
    }
    let unaccepted: Vec<&Check> = checks
        .checks
        .iter()
        .filter(|c| c.is_blocking() && !c.passed && !args.accept.contains(&c.name))
        .collect();
    if !unaccepted.is_empty() {
        let names = unaccepted
            .iter()
            .map(|c| format!("{} ({} failing rows)", c.name, c.failing_rows))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(anyhow::Error::new(Refusal::ValidationFailed {
            checks: names,
            report: stage_dir.join("report.md").display().to_string(),
        })
        .context(
            "not approved: fix the data or the rules and re-run `cleanmig transform`, or accept each failing check with `--accept CHECK --reason \"...\"`",
        ));
    }

    let reason = args.reason.clone().unwrap_or_default();
    let approval = Approval {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        approved_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        approved_by: args
            .by
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "unknown".into()),
        extracted_at: stage.extracted_at.clone(),
        fingerprint: stage.fingerprint.clone(),
        files: collect_files(artifacts_dir, &stage, &extract)?,
        checks: checks
            .checks
            .iter()
            .map(|c| CheckResult {
                name: c.name.clone(),
                severity: c.severity.clone(),
                passed: c.passed,
                failing_rows: c.failing_rows,
            })
            .collect(),
        accepted: checks
            .checks
            .iter()
            .filter(|c| args.accept.contains(&c.name))
            .map(|c| AcceptedCheck {
                name: c.name.clone(),
                failing_rows: c.failing_rows,
                reason: reason.clone(),
            })
            .collect(),
    };
    artifacts::write_json(&artifacts_dir.join(APPROVAL), &approval)?;
    Ok(approval)
}
