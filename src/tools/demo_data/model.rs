//! Who is who: the plan of counts for a scale, and the people, payments and existing rows drawn
//! from the seed. Everything the tables and the ground truth need is decided here; the writers
//! only render it.

use super::rng::{Rng, Stream};
use anyhow::{bail, Result};

/// 2023-01-15T00:00:00Z, the first paid enrollment.
pub const FIRST_PAYMENT_MS: i64 = 1_673_740_800_000;
/// 2025-06-01T00:00:00Z, the last paid enrollment.
pub const LAST_PAYMENT_MS: i64 = 1_748_736_000_000;
/// 2025-06-28T00:00:00Z, "now" for every generated row (the plan's date), so data is reproducible.
pub const NOW_MS: i64 = 1_751_068_800_000;
pub const DAY_MS: i64 = 86_400_000;

/// Row counts and planted-mess counts for one scale. At scale 1 the table totals are the seed's.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scale: f64,
    // xendit
    pub xendit_rows: usize,
    pub paid_p2p_rows: usize,
    pub duplicate_payment_rows: usize,
    pub paid_twice: usize,
    pub invalid_emails_xendit: usize,
    pub zero_amount_paid: usize,
    pub retried_payments: usize,
    pub canva_by_customers: usize,
    pub canva_only_buyers: usize,
    pub canva_only_with_contact: usize,
    pub other_product_paid: usize,
    pub unpaid_rows: usize,
    pub expired_filler: usize,
    // who the customers are
    pub both: usize,
    pub tag_only: usize,
    pub payers_without_contact: usize,
    pub payers_tagged_only_imported: usize,
    // systemeio
    pub systemeio_rows: usize,
    pub tagged_rows: usize,
    pub duplicate_contacts: usize,
    pub invalid_emails_systemeio: usize,
    pub test_tag_contacts: usize,
    pub imported_without_payment: usize,
    pub enrolled_p2p_without_payment: usize,
    pub filler_contacts: usize,
    // existing business tables
    pub profiles: usize,
    pub test_profiles: usize,
    pub admin_profiles: usize,
    pub keep_file_profiles: usize,
    pub existing_customers: usize,
    pub new_customers: usize,
    pub auth_users: usize,
    pub customers_with_auth_only: usize,
    pub test_auth_without_profile: usize,
    pub auth_email_case_differs: usize,
    pub enrollments: usize,
    pub test_enrollments: usize,
    pub transactions: usize,
    pub test_transactions_wanted: usize,
    pub purchase_leads: usize,
    pub test_purchase_leads: usize,
    pub ebook_contacts: usize,
    pub test_ebook_contacts: usize,
}

fn scaled(base: usize, scale: f64) -> usize {
    (base as f64 * scale).round() as usize
}

/// A planted kind of mess: scaled, but at least one so that small data sets still carry it.
fn planted(base: usize, scale: f64) -> usize {
    scaled(base, scale).max(1)
}

fn minus(total: usize, parts: &[usize], what: &str, scale: f64) -> Result<usize> {
    let sum: usize = parts.iter().sum();
    if sum > total {
        bail!(
            "--scale {scale} is too small: {what} needs at least {sum} rows but the scale gives {total}; \
             use --scale 0.02 or more"
        );
    }
    Ok(total - sum)
}

impl Plan {
    pub fn new(scale: f64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            bail!("--scale must be a positive number, got {scale}");
        }
        let s = scale;
        let xendit_rows = scaled(8_828, s);
        let paid_p2p_rows = scaled(3_216, s);
        let duplicate_payment_rows = planted(15, s);
        let paid_twice = planted(25, s);
        let invalid_emails_xendit = planted(4, s);
        let zero_amount_paid = planted(3, s);
        let retried_payments = planted(40, s);
        let payers_without_contact = planted(45, s);
        let payers_tagged_only_imported = planted(60, s);
        let payers = minus(
            paid_p2p_rows,
            &[
                duplicate_payment_rows,
                paid_twice,
                invalid_emails_xendit,
                zero_amount_paid,
            ],
            "paid Papers to Profits payments",
            s,
        )?;
        let both = minus(
            payers,
            &[payers_without_contact, payers_tagged_only_imported],
            "payers",
            s,
        )?;
        let canva_by_customers = planted(60, s);
        let canva_only_buyers = planted(90, s);
        let canva_only_with_contact = (canva_only_buyers * 85) / 100;
        let other_product_paid = planted(180, s);
        let unpaid_rows = planted(2_400, s);
        let expired_filler = minus(
            xendit_rows,
            &[
                paid_p2p_rows,
                retried_payments,
                canva_by_customers + canva_only_buyers,
                other_product_paid,
                unpaid_rows,
            ],
            "xendit",
            s,
        )?;

        let systemeio_rows = scaled(14_942, s);
        let tagged_rows = scaled(3_542, s);
        let duplicate_contacts = planted(30, s);
        let invalid_emails_systemeio = planted(5, s);
        let tag_only = minus(
            tagged_rows,
            &[both, duplicate_contacts, invalid_emails_systemeio],
            "contacts tagged PaidP2P",
            s,
        )?;
        let test_tag_contacts = planted(40, s);
        let imported_without_payment = planted(150, s);
        let enrolled_p2p_without_payment = planted(40, s);
        let filler_contacts = minus(
            systemeio_rows,
            &[
                tagged_rows,
                payers_tagged_only_imported,
                canva_only_with_contact,
                test_tag_contacts,
                imported_without_payment,
                enrolled_p2p_without_payment,
            ],
            "systemeio",
            s,
        )?;

        let customers = both + tag_only + payers_without_contact + payers_tagged_only_imported;
        let profiles = scaled(3_546, s);
        let test_profiles = planted(40, s);
        let admin_profiles = planted(4, s);
        let keep_file_profiles = 1;
        let existing_customers = minus(
            profiles,
            &[test_profiles, admin_profiles, keep_file_profiles],
            "unified_profiles",
            s,
        )?;
        let new_customers = minus(customers, &[existing_customers], "customers", s)?;
        let auth_users = scaled(3_552, s);
        let extra_auth = minus(auth_users, &[profiles], "auth.users", s)?;
        let customers_with_auth_only = planted(3, s).min(extra_auth).min(new_customers);
        let test_auth_without_profile = extra_auth - customers_with_auth_only;
        let auth_email_case_differs = planted(30, s);
        let enrollments = scaled(2_870, s);
        let test_enrollments = planted(30, s).min(test_profiles);
        let transactions = scaled(3_335, s);
        let test_transactions_wanted = planted(50, s);
        let purchase_leads = scaled(38, s);
        let test_purchase_leads = ((purchase_leads * 8) / 38).min(purchase_leads);
        let ebook_contacts = scaled(7, s);
        let test_ebook_contacts = ((ebook_contacts * 2) / 7).min(ebook_contacts);
        let plan = Plan {
            scale,
            xendit_rows,
            paid_p2p_rows,
            duplicate_payment_rows,
            paid_twice,
            invalid_emails_xendit,
            zero_amount_paid,
            retried_payments,
            canva_by_customers,
            canva_only_buyers,
            canva_only_with_contact,
            other_product_paid,
            unpaid_rows,
            expired_filler,
            both,
            tag_only,
            payers_without_contact,
            payers_tagged_only_imported,
            systemeio_rows,
            tagged_rows,
            duplicate_contacts,
            invalid_emails_systemeio,
            test_tag_contacts,
            imported_without_payment,
            enrolled_p2p_without_payment,
            filler_contacts,
            profiles,
            test_profiles,
            admin_profiles,
            keep_file_profiles,
            existing_customers,
            new_customers,
            auth_users,
            customers_with_auth_only,
            test_auth_without_profile,
            auth_email_case_differs,
            enrollments,
            test_enrollments,
            transactions,
            test_transactions_wanted,
            purchase_leads,
            test_purchase_leads,
            ebook_contacts,
            test_ebook_contacts,
        };
        minus(plan.enrollments, &[plan.test_enrollments], "enrollments", s)?;
        Ok(plan)
    }

    pub fn customers(&self) -> usize {
        self.both + self.tag_only + self.payers_without_contact + self.payers_tagged_only_imported
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Tagged PaidP2P and paid.
    Both,
    /// Tagged PaidP2P, no Xendit payment.
    TagOnly,
    /// Paid, no systeme.io contact at all.
    PayNoContact,
    /// Paid, the systeme.io contact is tagged only `Imported`.
    PayImported,
}

impl Kind {
    pub fn pays(self) -> bool {
        !matches!(self, Kind::TagOnly)
    }
    pub fn tagged(self) -> bool {
        matches!(self, Kind::Both | Kind::TagOnly)
    }
    pub fn has_contact(self) -> bool {
        !matches!(self, Kind::PayNoContact)
    }
    pub fn source(self) -> &'static str {
        match self {
            Kind::Both => "both",
            Kind::TagOnly => "tag_only",
            Kind::PayNoContact | Kind::PayImported => "payment_only",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// No auth user, no profile: the migration creates both.
    New,
    /// An auth user (signed up) but no profile.
    AuthOnly,
    /// Auth user and profile.
    Profile,
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub kind: Kind,
    pub existing: Existing,
    pub enrolled: bool,
    pub dup_contact: bool,
    pub paid_twice: bool,
    pub retried: bool,
    pub canva: bool,
    pub auth_case_differs: bool,
    /// Index into `payments` of the first paid P2P payment.
    pub first_payment: Option<u32>,
    /// Creation time of the (most recent) systeme.io contact.
    pub contact_created_ms: i64,
}

impl Customer {
    pub fn has_auth(&self) -> bool {
        self.existing != Existing::New
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    P2p,
    Canva,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Product::P2p => "p2p",
            Product::Canva => "canva",
        }
    }
}

/// A paid payment that a correct migration turns into a transaction.
#[derive(Debug, Clone)]
pub struct Payment {
    /// Person index of the payer (customers are persons `0..customers`).
    pub payer: u32,
    pub is_customer: bool,
    pub product: Product,
    pub created_ms: i64,
    /// Whole seconds unless `style < ISO_MS_STYLES` (then the row carries milliseconds).
    pub paid_ms: i64,
    pub amount: i64,
    pub settled: bool,
    /// Appears twice in xendit: once PAID, once SETTLED (the SETTLED row counts).
    pub duplicated: bool,
    /// An EXPIRED attempt with another External ID came first.
    pub retried: bool,
    pub existing_tx: bool,
    /// How the row writes its timestamps (0..100), the same draw in both shapes.
    pub style: u8,
}

/// Timestamp styles below this are ISO 8601 with `Z` and milliseconds in both shapes.
pub const ISO_MS_STYLES: u8 = 30;

impl Payment {
    pub fn external_id(&self, index: u32) -> String {
        let tag = match self.product {
            Product::P2p => "p2p",
            Product::Canva => "canva",
        };
        format!("{tag}-{}-{index:06}", self.created_ms / 1000)
    }
}

/// Person-index ranges: every person in the data set has a unique index (and so a unique email).
#[derive(Debug, Clone, Copy)]
pub struct Ranges {
    pub canva_only: u32,
    pub xendit_rejects: u32,
    pub systemeio_invalid: u32,
    pub unpaid: u32,
    pub expired: u32,
    pub other: u32,
    pub test_tag: u32,
    pub imported: u32,
    pub enrolled: u32,
    pub filler: u32,
    pub test_profiles: u32,
    pub test_auth: u32,
    pub staff: u32,
    pub leads: u32,
}

pub struct Model {
    pub seed: u64,
    pub plan: Plan,
    pub customers: Vec<Customer>,
    pub payments: Vec<Payment>,
    pub ranges: Ranges,
    pub test_transactions: usize,
}

fn pick(rng: &mut Rng, mut pool: Vec<u32>, n: usize, what: &str) -> Result<Vec<u32>> {
    if pool.len() < n {
        bail!(
            "cannot plant {n} {what}: only {} candidates; use a larger --scale",
            pool.len()
        );
    }
    for i in 0..n {
        let j = i + rng.below((pool.len() - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(n);
    pool.sort_unstable();
    Ok(pool)
}

fn style(rng: &mut Rng) -> u8 {
    rng.below(100) as u8
}

fn paid_instant(rng: &mut Rng, lo: i64, hi: i64, style: u8) -> i64 {
    let secs = rng.range(lo / 1000, hi / 1000) * 1000;
    if style < ISO_MS_STYLES {
        secs + rng.below(1000) as i64
    } else {
        secs
    }
}

impl Model {
    pub fn build(seed: u64, plan: Plan) -> Result<Self> {
        let mut rng = Rng::new(seed, Stream::Plan, 0);
        let mut kinds = Vec::with_capacity(plan.customers());
        kinds.extend(std::iter::repeat_n(Kind::Both, plan.both));
        kinds.extend(std::iter::repeat_n(Kind::TagOnly, plan.tag_only));
        kinds.extend(std::iter::repeat_n(
            Kind::PayNoContact,
            plan.payers_without_contact,
        ));
        kinds.extend(std::iter::repeat_n(
            Kind::PayImported,
            plan.payers_tagged_only_imported,
        ));
        rng.shuffle(&mut kinds);
        let mut customers: Vec<Customer> = kinds
            .into_iter()
            .map(|kind| Customer {
                kind,
                existing: Existing::Profile,
                enrolled: false,
                dup_contact: false,
                paid_twice: false,
                retried: false,
                canva: false,
                auth_case_differs: false,
                first_payment: None,
                contact_created_ms: 0,
            })
            .collect();
        let ids = |f: &dyn Fn(&Customer) -> bool, cs: &[Customer]| -> Vec<u32> {
            cs.iter()
                .enumerate()
                .filter(|(_, c)| f(c))
                .map(|(i, _)| i as u32)
                .collect()
        };

        for i in pick(
            &mut rng,
            ids(&|c| c.kind.tagged(), &customers),
            plan.duplicate_contacts,
            "duplicate contacts",
        )? {
            customers[i as usize].dup_contact = true;
        }

        // Customers the business tables do not know yet: some of each kind, mostly tag-only
        // students (the sync never created them).
        let nc = plan.new_customers;
        let from_both = nc / 10;
        let from_payers = nc / 20;
        let from_tag_only = nc - from_both - from_payers;
        let mut new = pick(
            &mut rng,
            ids(&|c| c.kind == Kind::Both, &customers),
            from_both,
            "new customers",
        )?;
        new.extend(pick(
            &mut rng,
            ids(
                &|c| matches!(c.kind, Kind::PayNoContact | Kind::PayImported),
                &customers,
            ),
            from_payers,
            "new customers",
        )?);
        new.extend(pick(
            &mut rng,
            ids(&|c| c.kind == Kind::TagOnly, &customers),
            from_tag_only,
            "new customers",
        )?);
        rng.shuffle(&mut new);
        for (n, i) in new.iter().enumerate() {
            customers[*i as usize].existing = if n < plan.customers_with_auth_only {
                Existing::AuthOnly
            } else {
                Existing::New
            };
        }

        let existing_payers = ids(
            &|c| c.existing == Existing::Profile && c.kind.pays(),
            &customers,
        );
        let twice = pick(
            &mut rng,
            existing_payers,
            plan.paid_twice,
            "customers who paid twice",
        )?;
        for &i in &twice {
            customers[i as usize].paid_twice = true;
        }
        let enrolled_customers = plan.enrollments - plan.test_enrollments;
        let others = ids(
            &|c| c.existing == Existing::Profile && !c.paid_twice,
            &customers,
        );
        let more = enrolled_customers.checked_sub(twice.len()).ok_or_else(|| {
            anyhow::anyhow!("too few enrollments for the customers who paid twice")
        })?;
        for i in twice
            .iter()
            .copied()
            .chain(pick(&mut rng, others, more, "enrolled customers")?)
        {
            customers[i as usize].enrolled = true;
        }
        for i in pick(
            &mut rng,
            ids(&|c| c.kind.pays(), &customers),
            plan.retried_payments,
            "retried payments",
        )? {
            customers[i as usize].retried = true;
        }
        for i in pick(
            &mut rng,
            (0..customers.len() as u32).collect(),
            plan.canva_by_customers,
            "Canva buyers",
        )? {
            customers[i as usize].canva = true;
        }
        for i in pick(
            &mut rng,
            ids(&|c| c.has_auth(), &customers),
            plan.auth_email_case_differs,
            "auth emails",
        )? {
            customers[i as usize].auth_case_differs = true;
        }

        // Payments: first P2P payment of every payer, then second payments, then Canva sales.
        let mut payments = Vec::new();
        for (i, c) in customers.iter_mut().enumerate() {
            let mut prng = Rng::new(seed, Stream::Payment, i as u64);
            let contact_created;
            if c.kind.pays() {
                let st = style(&mut prng);
                let hi = if c.paid_twice {
                    LAST_PAYMENT_MS - 220 * DAY_MS
                } else {
                    LAST_PAYMENT_MS
                };
                let paid = paid_instant(&mut prng, FIRST_PAYMENT_MS, hi, st);
                c.first_payment = Some(payments.len() as u32);
                payments.push(Payment {
                    payer: i as u32,
                    is_customer: true,
                    product: Product::P2p,
                    created_ms: paid - prng.range(60_000, 40 * 60_000) - (paid % 1000),
                    paid_ms: paid,
                    amount: p2p_amount(&mut prng),
                    settled: prng.percent(60),
                    duplicated: false,
                    retried: c.retried,
                    existing_tx: false,
                    style: st,
                });
                contact_created = paid - prng.range(DAY_MS / 24, 90 * DAY_MS);
            } else {
                contact_created = prng.range(FIRST_PAYMENT_MS - 120 * DAY_MS, LAST_PAYMENT_MS);
            }
            c.contact_created_ms = contact_created - contact_created % 1000;
        }
        for (i, c) in customers.iter().enumerate() {
            if c.paid_twice {
                let first = &payments[c.first_payment.expect("payer") as usize];
                let mut prng = Rng::new(seed, Stream::Payment, (customers.len() + i) as u64);
                let st = style(&mut prng);
                let lo = first.paid_ms + 20 * DAY_MS;
                let paid = paid_instant(&mut prng, lo, lo + 180 * DAY_MS, st);
                payments.push(Payment {
                    payer: i as u32,
                    is_customer: true,
                    product: Product::P2p,
                    created_ms: paid - prng.range(60_000, 40 * 60_000) - (paid % 1000),
                    paid_ms: paid,
                    amount: p2p_amount(&mut prng),
                    settled: prng.percent(60),
                    duplicated: false,
                    retried: false,
                    existing_tx: false,
                    style: st,
                });
            }
        }
        let p2p_count = payments.len();
        let p2p_ids: Vec<u32> = (0..p2p_count as u32).collect();
        for i in pick(
            &mut rng,
            p2p_ids,
            plan.duplicate_payment_rows,
            "duplicate payment rows",
        )? {
            let p = &mut payments[i as usize];
            p.duplicated = true;
            p.settled = true;
        }

        let ranges = {
            let mut next = customers.len() as u32;
            let mut take = |n: usize| {
                let start = next;
                next += n as u32;
                start
            };
            Ranges {
                canva_only: take(plan.canva_only_buyers),
                xendit_rejects: take(plan.invalid_emails_xendit + plan.zero_amount_paid),
                systemeio_invalid: take(plan.invalid_emails_systemeio),
                unpaid: take(plan.unpaid_rows),
                expired: take(plan.expired_filler),
                other: take(plan.other_product_paid),
                test_tag: take(plan.test_tag_contacts),
                imported: take(plan.imported_without_payment),
                enrolled: take(plan.enrolled_p2p_without_payment),
                filler: take(plan.filler_contacts),
                test_profiles: take(plan.test_profiles),
                test_auth: take(plan.test_auth_without_profile),
                staff: take(plan.admin_profiles + plan.keep_file_profiles),
                leads: take(plan.purchase_leads),
            }
        };

        let canva_payers: Vec<(u32, bool)> = customers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.canva)
            .map(|(i, _)| (i as u32, true))
            .chain((0..plan.canva_only_buyers as u32).map(|k| (ranges.canva_only + k, false)))
            .collect();
        for (n, (payer, is_customer)) in canva_payers.into_iter().enumerate() {
            let mut prng = Rng::new(seed, Stream::Payment, (2 * customers.len() + n) as u64);
            let st = style(&mut prng);
            let paid = paid_instant(&mut prng, FIRST_PAYMENT_MS, LAST_PAYMENT_MS, st);
            payments.push(Payment {
                payer,
                is_customer,
                product: Product::Canva,
                created_ms: paid - prng.range(60_000, 20 * 60_000) - (paid % 1000),
                paid_ms: paid,
                amount: *prng.pick(&[49, 99, 149]),
                settled: prng.percent(60),
                duplicated: false,
                retried: false,
                existing_tx: false,
                style: st,
            });
        }

        // Existing transactions: the sync copied most payments of customers who have a profile
        // (P2P first, then Canva sales, then Canva-only buyers); the rest of the table is test data.
        let mut pool: Vec<u32> = Vec::new();
        for product in [Product::P2p, Product::Canva] {
            for (i, p) in payments.iter().enumerate() {
                let profiled =
                    p.is_customer && customers[p.payer as usize].existing == Existing::Profile;
                if p.product == product && profiled {
                    pool.push(i as u32);
                }
            }
        }
        pool.extend(
            payments
                .iter()
                .enumerate()
                .filter(|(_, p)| !p.is_customer)
                .map(|(i, _)| i as u32),
        );
        let wanted = plan
            .transactions
            .saturating_sub(plan.test_transactions_wanted);
        let matched = wanted.min(pool.len());
        for &i in &pool[..matched] {
            payments[i as usize].existing_tx = true;
        }
        let test_transactions = plan.transactions - matched;
        if test_transactions > 0 && plan.test_profiles == 0 {
            bail!("test transactions need test profiles");
        }

        Ok(Model {
            seed,
            plan,
            customers,
            payments,
            ranges,
            test_transactions,
        })
    }

    /// The person with this index (customers who pay without a tagged contact get one-word
    /// family names, so that their Xendit customer name splits cleanly).
    pub fn person(&self, index: u32) -> super::names::Person {
        let one_word = self
            .customers
            .get(index as usize)
            .is_some_and(|c| !c.kind.tagged());
        super::names::person(self.seed, index, one_word)
    }

    /// Whether this person's Xendit rows must carry their exact name (payment-only customers,
    /// whose profile names come from it).
    pub fn exact_name(&self, index: u32) -> bool {
        self.customers
            .get(index as usize)
            .is_some_and(|c| !c.kind.tagged())
    }

    /// All P2P payments that become transactions, in model order.
    pub fn p2p_payments(&self) -> impl Iterator<Item = (u32, &Payment)> {
        self.payments
            .iter()
            .enumerate()
            .filter(|(_, p)| p.product == Product::P2p)
            .map(|(i, p)| (i as u32, p))
    }
}

fn p2p_amount(rng: &mut Rng) -> i64 {
    match rng.below(10) {
        0 => 800,
        1 => 1200,
        _ => 1000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_one_adds_up_to_the_seed_figures() {
        let plan = Plan::new(1.0).unwrap();
        assert_eq!(plan.xendit_rows, 8_828);
        assert_eq!(plan.paid_p2p_rows, 3_216);
        assert_eq!(plan.tagged_rows, 3_542);
        let model = Model::build(42, plan.clone()).unwrap();
        let p2p = model
            .payments
            .iter()
            .filter(|p| p.product == Product::P2p)
            .count();
        assert_eq!(
            p2p + plan.duplicate_payment_rows + plan.invalid_emails_xendit + plan.zero_amount_paid,
            3_216
        );
        let profiled = model
            .customers
            .iter()
            .filter(|c| c.existing == Existing::Profile)
            .count();
        assert_eq!(
            profiled + plan.test_profiles + plan.admin_profiles + 1,
            3_546
        );
        let enrolled = model.customers.iter().filter(|c| c.enrolled).count();
        assert_eq!(enrolled + plan.test_enrollments, 2_870);
        let matched = model.payments.iter().filter(|p| p.existing_tx).count();
        assert_eq!(matched + model.test_transactions, 3_335);
        assert!(model
            .customers
            .iter()
            .filter(|c| c.paid_twice)
            .all(|c| c.enrolled));
    }

    #[test]
    fn tiny_scale_still_plants_every_kind() {
        let plan = Plan::new(0.05).unwrap();
        assert!(plan.duplicate_contacts >= 1 && plan.paid_twice >= 1 && plan.tag_only >= 1);
        Model::build(1, plan).unwrap();
    }
}
