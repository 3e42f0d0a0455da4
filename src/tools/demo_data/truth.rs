//! The ground truth: what a correct migration of the generated data must produce, following
//! the business rules of the transform (issue 3). Lists are sorted so the file is deterministic;
//! it is written item by item so that scale 100 does not need it all in memory at once.

use super::business::{
    auth_id, enrollment_id, other_accounts, progress, test_enrollment_ids, test_transaction_id,
    transaction_id, Role,
};
use super::model::{Existing, Model, Product};
use super::sources::iso_z_ms;
use super::Tally;
use crate::artifacts::AtomicFile;
use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// What the generator wrote and what a correct migration must make of it.
pub struct GroundTruth {
    pub model: Model,
    pub legacy: bool,
    /// Rows per table, as the database took them.
    pub source_rows: BTreeMap<String, u64>,
    /// Planted mess, counted while rendering.
    pub tally: Tally,
}

impl GroundTruth {
    pub fn planted(&self) -> BTreeMap<String, u64> {
        let p = &self.model.plan;
        let m = &self.model;
        let mut out = self.tally.0.clone();
        let n = |v: usize| v as u64;
        let mut set = |k: &str, v: u64| {
            out.insert(k.to_string(), v);
        };
        set("duplicate_contacts", n(p.duplicate_contacts));
        set("retried_payments", n(p.retried_payments));
        set("paid_twice", n(p.paid_twice));
        set("duplicate_payment_rows", n(p.duplicate_payment_rows));
        set("unpaid_rows", n(p.unpaid_rows));
        set("expired_rows", n(p.expired_filler + p.retried_payments));
        set("canva_paid", n(p.canva_by_customers + p.canva_only_buyers));
        set("canva_paid_by_customers", n(p.canva_by_customers));
        set("canva_only_buyers", n(p.canva_only_buyers));
        set("other_product_paid", n(p.other_product_paid));
        set("zero_amount_paid", n(p.zero_amount_paid));
        set("tag_only_students", n(p.tag_only));
        set("payers_without_contact", n(p.payers_without_contact));
        set(
            "payers_tagged_only_imported",
            n(p.payers_tagged_only_imported),
        );
        set("test_tag_contacts", n(p.test_tag_contacts));
        set("imported_without_payment", n(p.imported_without_payment));
        set(
            "enrolled_p2p_without_payment",
            n(p.enrolled_p2p_without_payment),
        );
        set("invalid_emails_xendit", n(p.invalid_emails_xendit));
        set("invalid_emails_systemeio", n(p.invalid_emails_systemeio));
        set("test_profiles", n(p.test_profiles));
        set(
            "test_auth_users_without_profile",
            n(p.test_auth_without_profile),
        );
        set("test_transactions", n(m.test_transactions));
        set("test_enrollments", n(p.test_enrollments));
        set("staff_profiles", n(p.admin_profiles + p.keep_file_profiles));
        set("admin_profiles", n(p.admin_profiles));
        set("keep_file_profiles", n(p.keep_file_profiles));
        set(
            "customers_with_auth_but_no_profile",
            n(p.customers_with_auth_only),
        );
        set(
            "existing_customer_auth_users",
            m.customers.iter().filter(|c| c.has_auth()).count() as u64,
        );
        set(
            "existing_transactions_kept",
            m.payments.iter().filter(|p| p.existing_tx).count() as u64,
        );
        set(
            "existing_enrollments_kept",
            m.customers.iter().filter(|c| c.enrolled).count() as u64,
        );
        for key in [
            "mixed_case_emails",
            "padded_emails",
            "text_amounts",
            "auth_email_case_differs",
            "customer_email_missing",
            "null_customer_names",
        ] {
            out.entry(key.to_string()).or_insert(0);
        }
        out
    }

    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let p = &self.model.plan;
        let m = &self.model;
        let customers = m.customers.len() as u64;
        let kept = (p.admin_profiles + p.keep_file_profiles) as u64;
        BTreeMap::from([
            ("customers", customers),
            ("profiles", customers + kept),
            ("kept_profiles", kept),
            (
                "auth_users_to_create",
                m.customers.iter().filter(|c| !c.has_auth()).count() as u64,
            ),
            ("transactions", m.payments.len() as u64),
            (
                "transactions_p2p",
                m.payments
                    .iter()
                    .filter(|p| p.product == Product::P2p)
                    .count() as u64,
            ),
            (
                "transactions_canva",
                m.payments
                    .iter()
                    .filter(|p| p.product == Product::Canva)
                    .count() as u64,
            ),
            (
                "transactions_without_user",
                m.payments.iter().filter(|p| !p.is_customer).count() as u64,
            ),
            ("enrollments", customers),
            ("enrollments_without_payment", p.tag_only as u64),
            ("profiles_to_delete", p.test_profiles as u64),
            ("transactions_to_delete", m.test_transactions as u64),
            ("enrollments_to_delete", p.test_enrollments as u64),
            (
                "rejected_xendit",
                (p.invalid_emails_xendit + p.zero_amount_paid) as u64,
            ),
            ("rejected_systemeio", p.invalid_emails_systemeio as u64),
            ("customers_both", p.both as u64),
            ("customers_tag_only", p.tag_only as u64),
            (
                "customers_payment_only",
                (p.payers_without_contact + p.payers_tagged_only_imported) as u64,
            ),
            (
                "customers_existing_profile",
                m.customers
                    .iter()
                    .filter(|c| c.existing == Existing::Profile)
                    .count() as u64,
            ),
        ])
    }

    /// The whole ground truth as a JSON value (for tests and small scales).
    pub fn to_value(&self) -> Result<Value> {
        let mut buf = Vec::new();
        self.write_to(&mut buf)?;
        Ok(serde_json::from_slice(&buf)?)
    }

    /// Write the ground truth file (owner-only, under a temporary name, then renamed).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut file = AtomicFile::create(path)?;
        self.write_to(&mut file)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.commit()?;
        Ok(())
    }

    fn write_to(&self, w: &mut impl Write) -> Result<()> {
        let m = &self.model;
        writeln!(w, "{{")?;
        writeln!(w, "  \"seed\": {},", m.seed)?;
        writeln!(w, "  \"scale\": {},", json!(m.plan.scale))?;
        writeln!(w, "  \"legacy\": {},", self.legacy)?;
        writeln!(w, "  \"source_rows\": {},", json!(self.source_rows))?;
        writeln!(w, "  \"planted\": {},", json!(self.planted()))?;
        writeln!(w, "  \"counts\": {},", json!(self.counts()))?;

        let others = other_accounts(m);
        let mut kept: Vec<Value> = others
            .iter()
            .filter(|a| matches!(a.role, Role::Admin(_) | Role::KeepFile))
            .map(|a| json!({"email": a.email, "id": a.id.to_string()}))
            .collect();
        kept.sort_by(|a, b| a["email"].as_str().cmp(&b["email"].as_str()));
        list(w, "kept_profiles", kept.into_iter(), false)?;

        let mut ids: Vec<String> = others
            .iter()
            .filter(|a| matches!(a.role, Role::TestProfile(_)))
            .map(|a| a.id.to_string())
            .collect();
        ids.sort();
        list(
            w,
            "delete_profile_ids",
            ids.into_iter().map(Value::String),
            false,
        )?;
        let mut ids: Vec<String> = (0..m.test_transactions as u32)
            .map(|k| test_transaction_id(m, k).to_string())
            .collect();
        ids.sort();
        list(
            w,
            "delete_transaction_ids",
            ids.into_iter().map(Value::String),
            false,
        )?;
        let mut ids: Vec<String> = test_enrollment_ids(m)
            .iter()
            .map(|u| u.to_string())
            .collect();
        ids.sort();
        list(
            w,
            "delete_enrollment_ids",
            ids.into_iter().map(Value::String),
            false,
        )?;

        // Customers and their enrollments, by normalized email.
        let mut by_email: Vec<(String, u32)> = (0..m.customers.len() as u32)
            .map(|i| (m.person(i).email, i))
            .collect();
        by_email.sort_unstable();
        list(
            w,
            "customers",
            by_email.iter().map(|(email, i)| {
                let c = &m.customers[*i as usize];
                let person = m.person(*i);
                let mut o = Map::new();
                o.insert("email".into(), json!(email));
                o.insert(
                    "auth_user_id".into(),
                    json!(c.has_auth().then(|| auth_id(m, *i).to_string())),
                );
                o.insert("source".into(), json!(c.kind.source()));
                o.insert("first_name".into(), json!(person.first));
                o.insert("last_name".into(), json!(person.last));
                o.insert(
                    "existing_profile".into(),
                    json!(c.existing == Existing::Profile),
                );
                Value::Object(o)
            }),
            false,
        )?;

        let mut by_ext: Vec<(String, u32)> = m
            .payments
            .iter()
            .enumerate()
            .map(|(i, p)| (p.external_id(i as u32), i as u32))
            .collect();
        by_ext.sort_unstable();
        list(
            w,
            "transactions",
            by_ext.iter().map(|(ext, i)| {
                let p = &m.payments[*i as usize];
                let mut o = Map::new();
                o.insert("external_id".into(), json!(ext));
                o.insert("product".into(), json!(p.product.name()));
                o.insert("email".into(), json!(m.person(p.payer).email));
                o.insert("amount".into(), json!(format!("{}.00", p.amount)));
                o.insert(
                    "existing_id".into(),
                    json!(p.existing_tx.then(|| transaction_id(m, *i).to_string())),
                );
                o.insert("paid_at".into(), json!(iso_z_ms(p.paid_ms)));
                o.insert(
                    "status".into(),
                    json!(if p.settled { "SETTLED" } else { "PAID" }),
                );
                o.insert("customer".into(), json!(p.is_customer));
                Value::Object(o)
            }),
            false,
        )?;

        list(
            w,
            "enrollments",
            by_email.iter().map(|(email, i)| {
                let c = &m.customers[*i as usize];
                let mut o = Map::new();
                o.insert("email".into(), json!(email));
                o.insert(
                    "existing_id".into(),
                    json!(c.enrolled.then(|| enrollment_id(m, *i).to_string())),
                );
                o.insert(
                    "progress".into(),
                    json!(c.enrolled.then(|| progress(m, *i))),
                );
                o.insert(
                    "transaction_external_id".into(),
                    json!(c
                        .first_payment
                        .map(|p| m.payments[p as usize].external_id(p))),
                );
                Value::Object(o)
            }),
            true,
        )?;
        writeln!(w, "}}")?;
        Ok(())
    }
}

/// One JSON list, one item per line; every list but the last is followed by a comma.
fn list(
    w: &mut impl Write,
    name: &str,
    items: impl Iterator<Item = Value>,
    last: bool,
) -> Result<()> {
    write!(w, "  \"{name}\": [")?;
    let mut first = true;
    for item in items {
        w.write_all(if first { b"\n    " } else { b",\n    " })?;
        serde_json::to_writer(&mut *w, &item)?;
        first = false;
    }
    let comma = if last { "" } else { "," };
    if first {
        writeln!(w, "]{comma}")?;
    } else {
        writeln!(w, "\n  ]{comma}")?;
    }
    Ok(())
}
