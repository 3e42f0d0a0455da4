//! The source tables `xendit` and `systemeio`, in the canonical (API) or legacy (CSV export)
//! shape. Rows of several kinds are interleaved at random, and each row is rendered from the
//! model with its own random stream, so both shapes carry the same people, payments and mess.

use super::copy::CopyIn;
use super::model::{
    Kind, Model, Product, DAY_MS, FIRST_PAYMENT_MS, ISO_MS_STYLES, LAST_PAYMENT_MS, NOW_MS,
};
use super::names::{invalid_email, mobile, render_email, Person};
use super::rng::{Rng, Stream};
use super::Tally;
use anyhow::Result;
use chrono::{DateTime, FixedOffset, Utc};
use tokio_postgres::Client;

const P2P_DESCRIPTIONS: &[&str] = &[
    "Papers to Profits - Full Course",
    "Papers to Profits Enrollment",
    "Papers to Profits (Early Bird)",
];
const CANVA_DESCRIPTIONS: &[&str] = &[
    "Canva Ebook: Design Your First Planner",
    "Canva Ebook Bundle",
];
const OTHER_DESCRIPTIONS: &[&str] = &[
    "1-on-1 Coaching Session",
    "Printable Planner Bundle",
    "Shopify Store Setup Workshop",
];
/// (payment method, channel, fee in basis points)
const METHODS: &[(&str, &str, i64)] = &[
    ("EWALLET", "GCASH", 230),
    ("EWALLET", "GCASH", 230),
    ("EWALLET", "PAYMAYA", 230),
    ("BANK_TRANSFER", "BPI", 150),
    ("BANK_TRANSFER", "BDO", 150),
    ("CREDIT_CARD", "VISA", 320),
    ("RETAIL_OUTLET", "7ELEVEN", 200),
    ("QR_CODE", "QRPH", 100),
];
const BUSINESS_ID: &str = "5f27a14a9bf05c73dd040bc8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Paid,
    Settled,
    Pending,
    Expired,
}

impl Status {
    fn text(self, legacy: bool) -> &'static str {
        match self {
            Status::Paid => "PAID",
            Status::Settled => "SETTLED",
            Status::Pending if legacy => "UNPAID",
            Status::Pending => "PENDING",
            Status::Expired => "EXPIRED",
        }
    }
    fn paid(self) -> bool {
        matches!(self, Status::Paid | Status::Settled)
    }
}

/// One xendit row before it is written in a shape.
struct XRow {
    external_id: String,
    status: Status,
    description: &'static str,
    amount: i64,
    email: String,
    customer_name: Option<String>,
    phone: Option<String>,
    method: (&'static str, &'static str, i64),
    created_ms: i64,
    paid_ms: Option<i64>,
    settled_ms: Option<i64>,
    style: u8,
    /// Draws for what only one shape writes.
    rng: Rng,
}

fn whole_seconds(ms: i64) -> i64 {
    ms - ms.rem_euclid(1000)
}

pub fn iso_z_ms(ms: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).expect("time in range");
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn in_offset(ms: i64, hours: i32) -> DateTime<FixedOffset> {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).expect("time in range");
    t.with_timezone(&FixedOffset::east_opt(hours * 3600).expect("offset"))
}

fn iso_offset(ms: i64) -> String {
    in_offset(ms, 8).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn naive(ms: i64, hours: i32) -> String {
    in_offset(ms, hours).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A timestamptz literal for COPY.
pub fn pg_time(ms: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).expect("time in range");
    t.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string()
}

/// What a legacy export's Timezone column says, and the offset it means.
const ZONES: &[(&str, i32)] = &[
    ("Asia/Manila", 8),
    ("Asia/Manila", 8),
    ("Asia/Manila", 8),
    ("GMT+8", 8),
    ("+08:00", 8),
    ("UTC", 0),
];

impl XRow {
    fn new(
        model: &Model,
        rng: Rng,
        external_id: String,
        status: Status,
        product: Option<Product>,
        amount: i64,
        email: String,
    ) -> Self {
        let mut row = XRow {
            external_id,
            status,
            description: "",
            amount,
            email,
            customer_name: None,
            phone: None,
            method: METHODS[0],
            created_ms: 0,
            paid_ms: None,
            settled_ms: None,
            style: 0,
            rng,
        };
        let _ = model;
        row.description = match product {
            Some(Product::P2p) => *row.rng.pick(P2P_DESCRIPTIONS),
            Some(Product::Canva) => *row.rng.pick(CANVA_DESCRIPTIONS),
            None => *row.rng.pick(OTHER_DESCRIPTIONS),
        };
        row.method = *row.rng.pick(METHODS);
        row
    }
}

/// How a row's e-mail and name were written, counted into the ground truth.
fn count_email(tally: &mut Tally, mess: super::names::EmailMess) {
    if mess.mixed_case {
        tally.add("mixed_case_emails", 1);
    }
    if mess.padded {
        tally.add("padded_emails", 1);
    }
}

fn customer_name(rng: &mut Rng, person: &Person, exact: bool, tally: &mut Tally) -> Option<String> {
    if exact {
        return Some(person.full_name());
    }
    match rng.below(100) {
        0..70 => Some(person.full_name()),
        70..85 => Some(person.full_name().to_uppercase()),
        _ => {
            tally.add("null_customer_names", 1);
            None
        }
    }
}

struct XenditGen<'a> {
    model: &'a Model,
    p2p: Vec<u32>,
    duplicated: Vec<u32>,
    retried: Vec<u32>,
    canva: Vec<u32>,
}

impl XenditGen<'_> {
    fn payment_row(&self, pi: u32, copy: bool, tally: &mut Tally) -> XRow {
        let m = self.model;
        let p = &m.payments[pi as usize];
        let person = m.person(p.payer);
        let status = if p.duplicated {
            if copy {
                Status::Settled
            } else {
                Status::Paid
            }
        } else if p.settled {
            Status::Settled
        } else {
            Status::Paid
        };
        let mut rng = Rng::new(m.seed, Stream::PaymentRow, 2 * pi as u64 + copy as u64);
        let (email, mess) = render_email(&person.email, &mut rng, 6, 3);
        count_email(tally, mess);
        let name = customer_name(&mut rng, &person, m.exact_name(p.payer), tally);
        let phone = rng.percent(60).then(|| mobile(&mut rng));
        let mut row = XRow::new(
            m,
            rng,
            p.external_id(pi),
            status,
            Some(p.product),
            p.amount,
            email,
        );
        row.customer_name = name;
        row.phone = phone;
        row.created_ms = p.created_ms;
        row.paid_ms = Some(p.paid_ms);
        row.style = p.style;
        if status == Status::Settled {
            row.settled_ms =
                Some(whole_seconds(p.paid_ms) + row.rng.range(DAY_MS, 3 * DAY_MS) / 1000 * 1000);
        }
        row
    }

    fn retry_row(&self, pi: u32, tally: &mut Tally) -> XRow {
        let m = self.model;
        let p = &m.payments[pi as usize];
        let person = m.person(p.payer);
        let mut rng = Rng::new(m.seed, Stream::PaymentRow, (1u64 << 40) + pi as u64);
        let (email, mess) = render_email(&person.email, &mut rng, 6, 3);
        count_email(tally, mess);
        let name = customer_name(&mut rng, &person, m.exact_name(p.payer), tally);
        let created = p.created_ms - rng.range(3_600, 72 * 3_600) * 1000;
        let ext = format!("p2p-{}-r{pi:06}", created / 1000);
        let mut row = XRow::new(
            m,
            rng,
            ext,
            Status::Expired,
            Some(Product::P2p),
            p.amount,
            email,
        );
        row.customer_name = name;
        row.created_ms = created;
        row.style = row.rng.below(100) as u8;
        row
    }

    /// Unpaid, expired and other-product rows: a random customer or a passer-by.
    fn filler_row(&self, kind: u8, k: u32, tally: &mut Tally) -> XRow {
        let m = self.model;
        let mut rng = Rng::new(
            m.seed,
            Stream::XenditFiller,
            ((kind as u64) << 32) + k as u64,
        );
        let customers = m.customers.len() as u64;
        let (start, status, tag) = match kind {
            0 => (m.ranges.unpaid, Status::Pending, 'u'),
            1 => (m.ranges.expired, Status::Expired, 'e'),
            _ => (
                m.ranges.other,
                if rng.percent(60) {
                    Status::Settled
                } else {
                    Status::Paid
                },
                'o',
            ),
        };
        let payer = if customers > 0 && rng.percent(30) {
            rng.below(customers) as u32
        } else {
            start + k
        };
        let person = m.person(payer);
        let product = if kind == 2 {
            None
        } else {
            match rng.below(100) {
                0..70 => Some(Product::P2p),
                70..85 => Some(Product::Canva),
                _ => None,
            }
        };
        let amount = match product {
            Some(Product::P2p) => 1000,
            Some(Product::Canva) => 99,
            None => *rng.pick(&[350, 1500, 2500]),
        };
        let (email, mess) = render_email(&person.email, &mut rng, 6, 3);
        count_email(tally, mess);
        let name = customer_name(&mut rng, &person, m.exact_name(payer), tally);
        let created = rng.range(FIRST_PAYMENT_MS / 1000, LAST_PAYMENT_MS / 1000) * 1000;
        let prefix = match product {
            Some(Product::P2p) => "p2p",
            Some(Product::Canva) => "canva",
            None => "shop",
        };
        let ext = format!("{prefix}-{}-{tag}{k:06}", created / 1000);
        let mut row = XRow::new(m, rng, ext, status, product, amount, email);
        row.customer_name = name;
        row.created_ms = created;
        row.style = row.rng.below(100) as u8;
        if status.paid() {
            let paid = created + row.rng.range(60, 1800) * 1000;
            row.paid_ms = Some(paid);
            if status == Status::Settled {
                row.settled_ms = Some(paid + row.rng.range(1, 3) * DAY_MS);
            }
        }
        row
    }

    /// Paid P2P rows the rules reject: an invalid e-mail, or a zero amount.
    fn reject_row(&self, k: u32) -> XRow {
        let m = self.model;
        let mut rng = Rng::new(m.seed, Stream::XenditFiller, (7u64 << 32) + k as u64);
        let person = m.person(m.ranges.xendit_rejects + k);
        let invalid = (k as usize) < m.plan.invalid_emails_xendit;
        let email = if invalid {
            invalid_email(&person.email, k as u64)
        } else {
            person.email.clone()
        };
        let amount = if invalid { 1000 } else { 0 };
        let created = rng.range(FIRST_PAYMENT_MS / 1000, LAST_PAYMENT_MS / 1000) * 1000;
        let ext = format!("p2p-{}-x{k:06}", created / 1000);
        let status = if rng.percent(50) {
            Status::Settled
        } else {
            Status::Paid
        };
        let mut row = XRow::new(m, rng, ext, status, Some(Product::P2p), amount, email);
        row.customer_name = Some(person.full_name());
        row.created_ms = created;
        row.style = row.rng.below(100) as u8;
        let paid = created + row.rng.range(60, 1800) * 1000;
        row.paid_ms = Some(paid);
        if status == Status::Settled {
            row.settled_ms = Some(paid + DAY_MS);
        }
        row
    }
}

/// Picks which kind of row comes next, in proportion to what is left of each kind.
struct Merge {
    left: Vec<usize>,
    next: Vec<usize>,
    total: usize,
    rng: Rng,
}

impl Merge {
    fn new(rng: Rng, counts: Vec<usize>) -> Self {
        let total = counts.iter().sum();
        Merge {
            next: vec![0; counts.len()],
            left: counts,
            total,
            rng,
        }
    }
}

impl Iterator for Merge {
    type Item = (usize, usize);
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.total == 0 {
            return None;
        }
        let mut r = self.rng.below(self.total as u64) as usize;
        for (kind, left) in self.left.iter_mut().enumerate() {
            if r < *left {
                *left -= 1;
                self.total -= 1;
                let k = self.next[kind];
                self.next[kind] += 1;
                return Some((kind, k));
            }
            r -= *left;
        }
        unreachable!("remaining counts add up to the total")
    }
}

const XENDIT_CANONICAL: &[&str] = &[
    "id",
    "external_id",
    "payment_id",
    "business_id",
    "status",
    "payment_method",
    "amount",
    "fees",
    "payment_channel",
    "payment_destination",
    "customer_name",
    "customer_email",
    "description",
    "failure_code",
    "failure_reason",
    "created",
    "updated",
    "paid_at",
    "payout_at",
    "adjusted_at",
    "settled_at",
    "currency",
    "bank",
    "paid_amount",
    "payment_method_info",
    "channel_properties",
    "ewallet_type",
    "sync_timestamp",
];
const XENDIT_LEGACY: &[&str] = &[
    "Invoice ID",
    "External ID",
    "Status",
    "Description",
    "Amount",
    "Currency",
    "Fee",
    "Received Amount",
    "Email",
    "Customer Email",
    "Customer Name",
    "Customer Mobile Number",
    "Payment Method",
    "Bank Name",
    "VA Number",
    "Promotion(s)",
    "Created Timestamp",
    "Paid Timestamp",
    "Settled Timestamp",
    "Expiry Date",
    "Timezone",
];

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn money_text(cents: i64, style: u64) -> String {
    let plain = money(cents);
    let grouped = {
        let whole = (cents / 100).to_string();
        let mut out = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{out}.{:02}", cents % 100)
    };
    match style {
        0..50 => plain,
        50..75 => grouped,
        _ => format!("₱{grouped}"),
    }
}

pub async fn write_xendit(
    client: &Client,
    model: &Model,
    legacy: bool,
    tally: &mut Tally,
) -> Result<u64> {
    let gen = XenditGen {
        model,
        p2p: model.p2p_payments().map(|(i, _)| i).collect(),
        duplicated: model
            .p2p_payments()
            .filter(|(_, p)| p.duplicated)
            .map(|(i, _)| i)
            .collect(),
        retried: model
            .p2p_payments()
            .filter(|(_, p)| p.retried)
            .map(|(i, _)| i)
            .collect(),
        canva: model
            .payments
            .iter()
            .enumerate()
            .filter(|(_, p)| p.product == Product::Canva)
            .map(|(i, _)| i as u32)
            .collect(),
    };
    let plan = &model.plan;
    let counts = vec![
        gen.p2p.len(),
        gen.duplicated.len(),
        gen.retried.len(),
        gen.canva.len(),
        plan.other_product_paid,
        plan.unpaid_rows,
        plan.expired_filler,
        plan.invalid_emails_xendit + plan.zero_amount_paid,
    ];
    let merge = Merge::new(Rng::new(model.seed, Stream::Merge, 1), counts);
    let mut copy = CopyIn::start(
        client,
        "public.xendit",
        if legacy {
            XENDIT_LEGACY
        } else {
            XENDIT_CANONICAL
        },
    )
    .await?;
    for (kind, k) in merge {
        let row = match kind {
            0 => gen.payment_row(gen.p2p[k], false, tally),
            1 => gen.payment_row(gen.duplicated[k], true, tally),
            2 => gen.retry_row(gen.retried[k], tally),
            3 => gen.payment_row(gen.canva[k], false, tally),
            4 => gen.filler_row(2, k as u32, tally),
            5 => gen.filler_row(0, k as u32, tally),
            6 => gen.filler_row(1, k as u32, tally),
            _ => gen.reject_row(k as u32),
        };
        if legacy {
            legacy_xendit(&mut copy, row, tally);
        } else {
            canonical_xendit(&mut copy, row, tally);
        }
        copy.end_row().await?;
    }
    copy.finish().await
}

fn count_style(tally: &mut Tally, key: &str) {
    tally.add(&format!("timestamps_{key}"), 1);
}

fn canonical_xendit(copy: &mut CopyIn, mut row: XRow, tally: &mut Tally) {
    let paid = row.status.paid();
    let fmt = |ms: i64| -> String {
        match row.style {
            s if s < ISO_MS_STYLES => iso_z_ms(ms),
            s if s < 85 => iso_offset(ms),
            _ => naive(ms, 8),
        }
    };
    count_style(
        tally,
        match row.style {
            s if s < ISO_MS_STYLES => "iso_z_ms",
            s if s < 85 => "iso_offset",
            _ => "naive_manila",
        },
    );
    let id = row.rng.uuid();
    let invoice = row.rng.hex(24);
    let fee_cents = row.amount * row.method.2;
    let updated = row
        .settled_ms
        .or(row.paid_ms)
        .unwrap_or(row.created_ms + DAY_MS);
    copy.display(id)
        .text(&row.external_id)
        .text(&invoice)
        .text(BUSINESS_ID)
        .text(row.status.text(false))
        .opt(paid.then_some(row.method.0))
        .display(row.amount)
        .opt(paid.then(|| money(fee_cents)))
        .opt(paid.then_some(row.method.1))
        .opt(
            (paid && row.method.0 == "BANK_TRANSFER")
                .then(|| format!("{:010}", row.rng.below(10_000_000_000))),
        )
        .opt(row.customer_name.as_deref())
        .text(&row.email)
        .text(row.description)
        .null()
        .null()
        .text(&fmt(row.created_ms))
        .text(&fmt(updated))
        .opt(row.paid_ms.map(fmt))
        .null()
        .null()
        .opt(row.settled_ms.map(fmt))
        .text("PHP")
        .opt((paid && row.method.0 == "BANK_TRANSFER").then_some(row.method.1))
        .opt(paid.then(|| money(row.amount * 100)))
        .null()
        .opt((paid && row.method.0 == "EWALLET").then(|| {
            format!(
                "{{\"mobile_number\":\"{}\"}}",
                row.phone.as_deref().unwrap_or("")
            )
        }))
        .opt((paid && row.method.0 == "EWALLET").then_some(row.method.1))
        .text(&pg_time(NOW_MS - 3_600_000));
}

fn legacy_xendit(copy: &mut CopyIn, mut row: XRow, tally: &mut Tally) {
    let paid = row.status.paid();
    let (zone, hours) = *row.rng.pick(ZONES);
    let iso = row.style < ISO_MS_STYLES;
    count_style(tally, if iso { "iso_z_ms" } else { "naive_in_row_zone" });
    let fmt = |ms: Option<i64>| -> String {
        match ms {
            None => String::new(),
            Some(ms) if iso => iso_z_ms(ms),
            Some(ms) => naive(ms, hours),
        }
    };
    let invoice = row.rng.hex(24);
    let fee_cents = row.amount * row.method.2;
    let (fee, received) = if paid {
        let fee = money_text(fee_cents, row.rng.below(100));
        let received = money_text(row.amount * 100 - fee_cents, row.rng.below(100));
        if fee.contains([',', '₱']) || received.contains([',', '₱']) {
            tally.add("text_amounts", 1);
        }
        (Some(fee), Some(received))
    } else {
        (None, None)
    };
    let customer_email_missing = row.rng.percent(3);
    if customer_email_missing {
        tally.add("customer_email_missing", 1);
    }
    for ms in [row.paid_ms, row.settled_ms] {
        if ms.is_none() {
            tally.add("empty_timestamps", 1);
        }
    }
    let promo = row.rng.percent(5).then_some("EARLYBIRD");
    copy.text(&invoice)
        .text(&row.external_id)
        .text(row.status.text(true))
        .text(row.description)
        .display(row.amount)
        .text("PHP")
        .opt(fee)
        .opt(received)
        .text(&row.email)
        .opt((!customer_email_missing).then_some(row.email.as_str()))
        .opt(row.customer_name.as_deref())
        .opt(row.phone.as_deref())
        .opt(paid.then_some(row.method.0))
        .opt((paid && row.method.0 == "BANK_TRANSFER").then_some(row.method.1))
        .opt(
            (paid && row.method.0 == "BANK_TRANSFER")
                .then(|| format!("{:010}", row.rng.below(10_000_000_000))),
        )
        .opt(promo)
        .text(&fmt(Some(row.created_ms)))
        .text(&fmt(row.paid_ms))
        .text(&fmt(row.settled_ms))
        .text(&fmt(Some(row.created_ms + DAY_MS)))
        .text(zone);
}

/// One systemeio row before it is written in a shape.
struct Contact {
    contact_id: u64,
    email: String,
    first: Option<String>,
    last: Option<String>,
    tags: Option<String>,
    created_ms: i64,
    updated_ms: i64,
    phone: Option<String>,
    rng: Rng,
}

const CUSTOMER_TAGS: &[&str] = &[
    "PaidP2P",
    "PaidP2P",
    "PaidP2P,FBInviteSent",
    "PaidP2P,FBInviteSent",
    "PaidP2P, FBInviteSent",
    "Lead,PaidP2P",
    "Imported,PaidP2P",
];
const FILLER_TAGS: &[&str] = &[
    "Lead",
    "Lead",
    "Lead",
    "Webinar",
    "FBInviteSent",
    "FreeGuide,Lead",
    "Lead,Webinar",
    "Canva",
    "",
];

/// The tags a customer's (most recent) contact carries; shared with the existing profiles.
pub fn customer_tags(model: &Model, index: u32) -> String {
    let c = &model.customers[index as usize];
    let mut rng = Rng::new(model.seed, Stream::Contact, index as u64);
    let mut tags = match c.kind {
        Kind::PayImported => "Imported".to_string(),
        _ => rng.pick(CUSTOMER_TAGS).to_string(),
    };
    if c.canva && c.kind.tagged() {
        tags.push_str(",Canva,PaidCanva");
    }
    tags
}

/// The contact id of a customer's (most recent) contact.
pub fn customer_contact_id(index: u32) -> u64 {
    10_000_000 + 2 * index as u64
}

fn contact_times(rng: &mut Rng, created: i64) -> (i64, i64) {
    let updated = created + rng.range(0, (NOW_MS - created).max(1000) / 1000) * 1000;
    (created, updated)
}

fn person_contact(
    person: &Person,
    rng: &mut Rng,
    tally: &mut Tally,
) -> (String, Option<String>, Option<String>) {
    let (email, mess) = render_email(&person.email, rng, 6, 3);
    count_email(tally, mess);
    (email, Some(person.first.clone()), Some(person.last.clone()))
}

struct ContactGen<'a> {
    model: &'a Model,
    with_contact: Vec<u32>,
    duplicated: Vec<u32>,
}

impl ContactGen<'_> {
    fn customer(&self, i: u32, earlier: bool, tally: &mut Tally) -> Contact {
        let m = self.model;
        let c = &m.customers[i as usize];
        let person = m.person(i);
        let mut rng = Rng::new(m.seed, Stream::Contact, ((earlier as u64) << 40) + i as u64);
        let main_created = c.contact_created_ms;
        if earlier {
            // The older contact of the same person: other capitalisation, a poorer name,
            // created and last updated before the newer one was created.
            let created = main_created - rng.range(30, 400) * DAY_MS;
            let updated = created + rng.range(0, 2 * 86_400) * 1000;
            let variant = rng.below(3);
            let email = super::names::mixed_case(&person.email, variant);
            tally.add("mixed_case_emails", 1);
            let first = person.first.to_lowercase();
            return Contact {
                contact_id: customer_contact_id(i) + 1,
                email,
                first: Some(first),
                last: None,
                tags: Some(
                    if rng.percent(50) {
                        "PaidP2P"
                    } else {
                        "Lead,PaidP2P"
                    }
                    .to_string(),
                ),
                created_ms: created,
                updated_ms: updated,
                phone: None,
                rng,
            };
        }
        let (email, first, last) = person_contact(&person, &mut rng, tally);
        let (created, updated) = contact_times(&mut rng, main_created);
        let phone = rng.percent(50).then(|| mobile(&mut rng));
        Contact {
            contact_id: customer_contact_id(i),
            email,
            first,
            last,
            tags: Some(customer_tags(m, i)),
            created_ms: created,
            updated_ms: updated,
            phone,
            rng,
        }
    }

    /// Contacts that are not customers: `kind` says which.
    fn other(&self, kind: usize, k: u32, tally: &mut Tally) -> Contact {
        let m = self.model;
        let r = &m.ranges;
        let mut rng = Rng::new(
            m.seed,
            Stream::ContactFiller,
            ((kind as u64) << 32) + k as u64,
        );
        let (index, tags): (u32, Option<String>) = match kind {
            2 => (r.systemeio_invalid + k, Some("PaidP2P".into())),
            3 => (r.canva_only + k, Some("Canva,PaidCanva".into())),
            4 => (
                r.test_tag + k,
                Some(
                    if rng.percent(50) {
                        "TestTag"
                    } else {
                        "TestTag,Lead"
                    }
                    .into(),
                ),
            ),
            5 => (
                r.imported + k,
                Some(
                    if rng.percent(70) {
                        "Imported"
                    } else {
                        "Imported,FBInviteSent"
                    }
                    .into(),
                ),
            ),
            6 => (
                r.enrolled + k,
                Some(
                    if rng.percent(70) {
                        "Enrolled P2P"
                    } else {
                        "Enrolled P2P,FBInviteSent"
                    }
                    .into(),
                ),
            ),
            _ => {
                let t = rng.pick(FILLER_TAGS);
                (
                    r.filler + k,
                    if t.is_empty() && rng.percent(50) {
                        None
                    } else {
                        Some(t.to_string())
                    },
                )
            }
        };
        let person = m.person(index);
        let (email, mut first, mut last) = match kind {
            2 => (
                invalid_email(&person.email, k as u64),
                Some(person.first.clone()),
                Some(person.last.clone()),
            ),
            4 => (
                format!(
                    "test.{}+{k}@paperstoprofits.ph",
                    super::names::ascii(&person.first)
                ),
                Some(person.first.clone()),
                Some(person.last.clone()),
            ),
            _ => person_contact(&person, &mut rng, tally),
        };
        if kind == 7 && rng.percent(20) {
            tally.add("null_contact_names", 1);
            first = None;
            last = None;
        }
        let created = rng.range(FIRST_PAYMENT_MS - 200 * DAY_MS, NOW_MS - DAY_MS) / 1000 * 1000;
        let (created, updated) = contact_times(&mut rng, created);
        Contact {
            contact_id: 30_000_000 + ((kind as u64) << 24) + k as u64,
            email,
            first,
            last,
            tags,
            created_ms: created,
            updated_ms: updated,
            phone: None,
            rng,
        }
    }
}

const SYSTEMEIO_CANONICAL: &[&str] = &[
    "id",
    "contact_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "photo_url",
    "tags",
    "address_city",
    "address_country",
    "address_line1",
    "address_line2",
    "address_postal_code",
    "address_state",
    "custom_fields",
    "optin_email",
    "optin_sms",
    "time_zone",
    "language",
    "updated_at",
    "created_at",
    "sync_timestamp",
];
const SYSTEMEIO_LEGACY: &[&str] = &["Email", "First name", "Last name", "Tag", "Date Registered"];
const CITIES: &[&str] = &[
    "Quezon City",
    "Manila",
    "Cebu City",
    "Davao City",
    "Makati",
    "Parañaque",
    "Las Piñas",
];

pub async fn write_systemeio(
    client: &Client,
    model: &Model,
    legacy: bool,
    tally: &mut Tally,
) -> Result<u64> {
    let gen = ContactGen {
        model,
        with_contact: (0..model.customers.len() as u32)
            .filter(|&i| model.customers[i as usize].kind.has_contact())
            .collect(),
        duplicated: (0..model.customers.len() as u32)
            .filter(|&i| model.customers[i as usize].dup_contact)
            .collect(),
    };
    let plan = &model.plan;
    let counts = vec![
        gen.with_contact.len(),
        gen.duplicated.len(),
        plan.invalid_emails_systemeio,
        plan.canva_only_with_contact,
        plan.test_tag_contacts,
        plan.imported_without_payment,
        plan.enrolled_p2p_without_payment,
        plan.filler_contacts,
    ];
    let merge = Merge::new(Rng::new(model.seed, Stream::Merge, 2), counts);
    let mut copy = CopyIn::start(
        client,
        "public.systemeio",
        if legacy {
            SYSTEMEIO_LEGACY
        } else {
            SYSTEMEIO_CANONICAL
        },
    )
    .await?;
    for (kind, k) in merge {
        let contact = match kind {
            0 => gen.customer(gen.with_contact[k], false, tally),
            1 => gen.customer(gen.duplicated[k], true, tally),
            _ => gen.other(kind, k as u32, tally),
        };
        if contact
            .first
            .as_deref()
            .is_some_and(super::names::is_filipino_marked)
            || contact
                .last
                .as_deref()
                .is_some_and(super::names::is_filipino_marked)
        {
            tally.add("filipino_marked_names", 1);
        }
        if legacy {
            legacy_contact(&mut copy, contact);
        } else {
            canonical_contact(&mut copy, contact);
        }
        copy.end_row().await?;
    }
    copy.finish().await
}

fn canonical_contact(copy: &mut CopyIn, mut c: Contact) {
    let id = c.rng.uuid();
    let has_address = c.rng.percent(40);
    let city = has_address.then(|| *c.rng.pick(CITIES));
    let custom = match c.rng.below(3) {
        0 => None,
        1 => Some("{}".to_string()),
        _ => Some(format!(
            "{{\"facebook_name\": \"{} {}\"}}",
            c.first.as_deref().unwrap_or(""),
            c.last.as_deref().unwrap_or("")
        )),
    };
    let optin = c.rng.percent(80);
    let language = if c.rng.percent(70) { "en" } else { "fil" };
    let tz = c.rng.percent(60).then_some("Asia/Manila");
    copy.display(id)
        .display(c.contact_id)
        .text(&c.email)
        .opt(c.first.as_deref())
        .opt(c.last.as_deref())
        .opt(c.phone.as_deref())
        .null()
        .opt(c.tags.as_deref())
        .opt(city)
        .opt(has_address.then_some("PH"))
        .null()
        .null()
        .null()
        .null()
        .opt(custom)
        .display(optin)
        .null()
        .opt(tz)
        .text(language)
        .text(&pg_time(c.updated_ms))
        .text(&pg_time(c.created_ms))
        .text(&pg_time(NOW_MS - 3_600_000));
}

fn legacy_contact(copy: &mut CopyIn, mut c: Contact) {
    let registered = if c.rng.percent(80) {
        naive(whole_seconds(c.created_ms), 8)
    } else {
        iso_z_ms(c.created_ms)
    };
    copy.text(&c.email)
        .text(c.first.as_deref().unwrap_or(""))
        .text(c.last.as_deref().unwrap_or(""))
        .text(c.tags.as_deref().unwrap_or(""))
        .text(&registered);
}
