//! The live app's tables as production has them: auth users (as Supabase's server writes them),
//! profiles, transactions (legacy shape), enrollments with progress, and the tables that point at
//! them. Real customers' rows are mixed with test accounts, and staff accounts sit among them.

use super::copy::CopyIn;
use super::model::{Customer, Existing, Model, Product, DAY_MS, NOW_MS};
use super::names::{ascii, mixed_case};
use super::rng::{uuid_of, Rng, Stream};
use super::sources::{customer_contact_id, customer_tags, pg_time};
use super::Tally;
use anyhow::Result;
use chrono::{DateTime, Datelike, FixedOffset, Utc};
use serde_json::json;
use tokio_postgres::Client;
use uuid::Uuid;

/// The emails of pipeline/keep_emails.csv: staff that must survive the migration.
pub fn keep_file_emails() -> Vec<String> {
    include_str!("../../../pipeline/keep_emails.csv")
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Customer(u32),
    TestProfile(u32),
    TestAuthOnly(u32),
    Admin(u32),
    KeepFile,
}

/// Someone with a row in auth.users.
#[derive(Debug, Clone)]
pub struct Account {
    pub role: Role,
    pub person: u32,
    pub id: Uuid,
    /// As stored in auth.users and unified_profiles.
    pub email: String,
    pub first: Option<String>,
    pub last: Option<String>,
    pub created_ms: i64,
    pub has_profile: bool,
}

pub fn auth_id(model: &Model, person: u32) -> Uuid {
    uuid_of(model.seed, Stream::AuthId, person as u64)
}

pub fn transaction_id(model: &Model, payment: u32) -> Uuid {
    uuid_of(model.seed, Stream::Transaction, payment as u64)
}

pub fn test_transaction_id(model: &Model, k: u32) -> Uuid {
    uuid_of(model.seed, Stream::Test, (1u64 << 32) + k as u64)
}

pub fn enrollment_id(model: &Model, person: u32) -> Uuid {
    uuid_of(model.seed, Stream::Enrollment, person as u64)
}

pub fn course_id(model: &Model, n: u64) -> Uuid {
    uuid_of(model.seed, Stream::Course, n)
}

const PROGRESS: &[&str] = &[
    "0", "0", "0", "12.5", "25", "37.5", "50", "62.5", "75", "87.5", "100", "100",
];

/// The course progress of an existing enrollment, as text (numeric prints it back the same).
pub fn progress(model: &Model, person: u32) -> &'static str {
    let mut rng = Rng::new(model.seed, Stream::Enrollment, (1u64 << 40) + person as u64);
    PROGRESS[rng.below(PROGRESS.len() as u64) as usize]
}

fn customer_account(model: &Model, i: u32, c: &Customer) -> Account {
    let person = model.person(i);
    let email = if c.auth_case_differs {
        mixed_case(&person.email, (i % 3) as u64)
    } else {
        person.email.clone()
    };
    let first_paid = c.first_payment.map(|p| model.payments[p as usize].paid_ms);
    let created = match (c.kind.has_contact(), first_paid) {
        (true, Some(p)) => c.contact_created_ms.min(p),
        (true, None) => c.contact_created_ms,
        (false, Some(p)) => p,
        (false, None) => c.contact_created_ms,
    };
    Account {
        role: Role::Customer(i),
        person: i,
        id: auth_id(model, i),
        email,
        first: Some(person.first),
        last: Some(person.last),
        created_ms: created - created.rem_euclid(1000) + 5_000,
        has_profile: c.existing == Existing::Profile,
    }
}

/// Test accounts, test-only auth users and staff, in that order.
pub fn other_accounts(model: &Model) -> Vec<Account> {
    let r = &model.ranges;
    let p = &model.plan;
    let mut out = Vec::new();
    let mut rng = Rng::new(model.seed, Stream::Test, 0);
    for k in 0..p.test_profiles as u32 {
        let person = model.person(r.test_profiles + k);
        let email = match k % 4 {
            0 => format!("test{k}@paperstoprofits.ph"),
            1 => format!("qa.tester{k}@gmail.com"),
            2 => format!("dev+{k}@example.com"),
            _ => format!("{}.test{k}@yahoo.com", ascii(&person.first)),
        };
        out.push(Account {
            role: Role::TestProfile(k),
            person: r.test_profiles + k,
            id: auth_id(model, r.test_profiles + k),
            email,
            first: Some(if k % 2 == 0 {
                "Test".to_string()
            } else {
                person.first
            }),
            last: Some(if k % 2 == 0 {
                format!("User {k}")
            } else {
                "Tester".to_string()
            }),
            created_ms: rng.range(1_672_531_200, NOW_MS / 1000) * 1000,
            has_profile: true,
        });
    }
    for k in 0..p.test_auth_without_profile as u32 {
        out.push(Account {
            role: Role::TestAuthOnly(k),
            person: r.test_auth + k,
            id: auth_id(model, r.test_auth + k),
            email: format!("loadtest{k}@example.com"),
            first: None,
            last: None,
            created_ms: rng.range(1_672_531_200, NOW_MS / 1000) * 1000,
            has_profile: false,
        });
    }
    for k in 0..p.admin_profiles as u32 {
        let person = model.person(r.staff + k);
        out.push(Account {
            role: Role::Admin(k),
            person: r.staff + k,
            id: auth_id(model, r.staff + k),
            email: format!(
                "{}.{}{k}@paperstoprofits.ph",
                ascii(&person.first),
                ascii(&person.last)
            ),
            first: Some(person.first),
            last: Some(person.last),
            created_ms: 1_660_000_000_000 + k as i64 * DAY_MS,
            has_profile: true,
        });
    }
    for (n, email) in keep_file_emails()
        .into_iter()
        .take(p.keep_file_profiles)
        .enumerate()
    {
        let index = r.staff + p.admin_profiles as u32 + n as u32;
        out.push(Account {
            role: Role::KeepFile,
            person: index,
            id: auth_id(model, index),
            email,
            first: Some("Support".to_string()),
            last: Some("Team".to_string()),
            created_ms: 1_660_500_000_000,
            has_profile: true,
        });
    }
    out
}

/// Every auth.users row: customers the app knows, then the others.
pub fn accounts(model: &Model) -> impl Iterator<Item = Account> + '_ {
    model
        .customers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.has_auth())
        .map(|(i, c)| customer_account(model, i as u32, c))
        .chain(other_accounts(model))
}

const AUTH_COLUMNS: &[&str] = &[
    "instance_id",
    "id",
    "aud",
    "role",
    "email",
    "encrypted_password",
    "email_confirmed_at",
    "invited_at",
    "confirmation_token",
    "confirmation_sent_at",
    "recovery_token",
    "recovery_sent_at",
    "email_change_token_new",
    "email_change",
    "email_change_sent_at",
    "last_sign_in_at",
    "raw_app_meta_data",
    "raw_user_meta_data",
    "is_super_admin",
    "created_at",
    "updated_at",
    "phone",
    "phone_confirmed_at",
    "phone_change",
    "phone_change_token",
    "phone_change_sent_at",
    "email_change_token_current",
    "email_change_confirm_status",
    "banned_until",
    "reauthentication_token",
    "reauthentication_sent_at",
    "is_sso_user",
    "deleted_at",
    "is_anonymous",
];
const IDENTITY_COLUMNS: &[&str] = &[
    "provider_id",
    "user_id",
    "identity_data",
    "provider",
    "last_sign_in_at",
    "created_at",
    "updated_at",
    "id",
];

fn bcrypt_like(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let tail: String = (0..53)
        .map(|_| ALPHABET[rng.below(64) as usize] as char)
        .collect();
    format!("$2a$10${tail}")
}

pub async fn write_auth(client: &Client, model: &Model, tally: &mut Tally) -> Result<(u64, u64)> {
    let mut users = CopyIn::start(client, "auth.users", AUTH_COLUMNS).await?;
    for a in accounts(model) {
        let mut rng = Rng::new(model.seed, Stream::AuthRow, a.person as u64);
        let confirmed = a.created_ms + rng.range(30, 3_600) * 1000;
        let signed_in = rng
            .percent(85)
            .then(|| rng.range(confirmed / 1000, NOW_MS / 1000) * 1000);
        let password = if rng.percent(70) {
            bcrypt_like(&mut rng)
        } else {
            String::new()
        };
        let meta = match (&a.first, &a.last) {
            (Some(f), Some(l)) => json!({"first_name": f, "last_name": l, "email_verified": true}),
            _ => json!({}),
        };
        if a.role == Role::Customer(a.person) && a.email != a.email.to_lowercase() {
            tally.add("auth_email_case_differs", 1);
        }
        users
            .text("00000000-0000-0000-0000-000000000000")
            .display(a.id)
            .text("authenticated")
            .text("authenticated")
            .text(&a.email)
            .text(&password)
            .text(&pg_time(confirmed))
            .null()
            .text("")
            .text(&pg_time(a.created_ms))
            .text("")
            .null()
            .text("")
            .text("")
            .null()
            .opt(signed_in.map(pg_time))
            .text(r#"{"provider": "email", "providers": ["email"]}"#)
            .text(&meta.to_string())
            .null()
            .text(&pg_time(a.created_ms))
            .text(&pg_time(signed_in.unwrap_or(confirmed)))
            .null()
            .null()
            .text("")
            .text("")
            .null()
            .text("")
            .text("0")
            .null()
            .text("")
            .null()
            .text("false")
            .null()
            .text("false");
        users.end_row().await?;
    }
    let user_rows = users.finish().await?;

    let mut identities = CopyIn::start(client, "auth.identities", IDENTITY_COLUMNS).await?;
    for a in accounts(model) {
        let mut rng = Rng::new(model.seed, Stream::Identity, a.person as u64);
        let data = json!({
            "sub": a.id.to_string(),
            "email": a.email,
            "email_verified": true,
            "phone_verified": false,
        });
        identities
            .display(a.id)
            .display(a.id)
            .text(&data.to_string())
            .text("email")
            .null()
            .text(&pg_time(a.created_ms))
            .text(&pg_time(a.created_ms))
            .display(rng.uuid());
        identities.end_row().await?;
    }
    let identity_rows = identities.finish().await?;
    Ok((user_rows, identity_rows))
}

pub async fn write_courses(client: &Client, model: &Model) -> Result<u64> {
    let mut copy = CopyIn::start(
        client,
        "public.courses",
        &[
            "id",
            "title",
            "slug",
            "description",
            "status",
            "created_at",
            "updated_at",
        ],
    )
    .await?;
    let courses = [
        (
            "Papers to Profits",
            "papers-to-profits",
            "Turn printable papers into a profitable business.",
        ),
        (
            "Canva Ebook Masterclass",
            "canva-ebook-masterclass",
            "Design and sell ebooks with Canva.",
        ),
        (
            "Shopify for Beginners",
            "shopify-for-beginners",
            "Open your first online store.",
        ),
    ];
    for (n, (title, slug, description)) in courses.iter().enumerate() {
        let at = pg_time(1_669_852_800_000 + n as i64 * 30 * DAY_MS);
        copy.display(course_id(model, n as u64))
            .text(title)
            .text(slug)
            .text(description)
            .text("published")
            .text(&at)
            .text(&at);
        copy.end_row().await?;
    }
    copy.finish().await
}

fn text_array(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|t| format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

fn manila(ms: i64) -> DateTime<FixedOffset> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .expect("time in range")
        .with_timezone(&FixedOffset::east_opt(8 * 3600).expect("offset"))
}

const PROFILE_COLUMNS: &[&str] = &[
    "id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "tags",
    "acquisition_source",
    "payment_source",
    "cohort_date",
    "systemeio_id",
    "systemeio_tags",
    "created_at",
    "updated_at",
    "last_active_at",
    "tier",
    "tier_assignment",
    "tier_assignment_notes",
    "api_source",
    "last_api_sync_at",
    "api_sync_version",
];

pub async fn write_profiles(client: &Client, model: &Model) -> Result<u64> {
    let mut copy = CopyIn::start(client, "public.unified_profiles", PROFILE_COLUMNS).await?;
    for a in accounts(model).filter(|a| a.has_profile) {
        let mut rng = Rng::new(model.seed, Stream::Profile, a.person as u64);
        let (tags, systemeio_id, acquisition, payment, cohort_ms) = match a.role {
            Role::Customer(i) => {
                let c = &model.customers[i as usize];
                let first_paid = c.first_payment.map(|p| model.payments[p as usize].paid_ms);
                let tags = c.kind.has_contact().then(|| customer_tags(model, i));
                (
                    tags,
                    c.kind
                        .has_contact()
                        .then(|| customer_contact_id(i).to_string()),
                    if c.kind.has_contact() {
                        "systemeio"
                    } else {
                        "xendit"
                    },
                    first_paid.map(|_| "xendit"),
                    first_paid.unwrap_or(c.contact_created_ms),
                )
            }
            Role::TestProfile(_) => (
                Some("TestTag".to_string()),
                None,
                "manual",
                None,
                a.created_ms,
            ),
            _ => (None, None, "manual", None, a.created_ms),
        };
        let tag_list: Vec<&str> = tags
            .as_deref()
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let (tier, assignment, notes) = match a.role {
            Role::Admin(_) => ("admin", "manual", Some("staff")),
            Role::KeepFile => ("viewer", "manual", Some("support mailbox")),
            Role::TestProfile(k) if k % 3 == 0 => ("student", "manual", Some("QA account")),
            _ => (
                if rng.percent(80) { "student" } else { "viewer" },
                "auto",
                None,
            ),
        };
        let phone = rng.percent(40).then(|| super::names::mobile(&mut rng));
        let active = rng
            .percent(70)
            .then(|| rng.range(a.created_ms / 1000, NOW_MS / 1000) * 1000);
        copy.display(a.id)
            .text(&a.email)
            .opt(a.first.as_deref())
            .opt(a.last.as_deref())
            .opt(phone)
            .text(&text_array(&tag_list))
            .text(acquisition)
            .opt(payment)
            .text(&manila(cohort_ms).format("%Y-%m-%d").to_string())
            .opt(systemeio_id)
            .opt(tags.as_deref())
            .text(&pg_time(a.created_ms))
            .text(&pg_time(a.created_ms + DAY_MS))
            .opt(active.map(pg_time))
            .text(tier)
            .text(assignment)
            .opt(notes)
            .text("systemeio")
            .text(&pg_time(NOW_MS - 7 * DAY_MS))
            .text("1");
        copy.end_row().await?;
    }
    copy.finish().await
}

const TRANSACTION_COLUMNS: &[&str] = &[
    "id",
    "user_id",
    "amount",
    "currency",
    "status",
    "payment_method",
    "payment_provider",
    "payment_provider_id",
    "payment_provider_fee",
    "description",
    "product_name",
    "product_type",
    "product_id",
    "created_at",
    "updated_at",
    "paid_at",
    "settled_at",
    "cancelled_at",
    "refunded_at",
    "failed_at",
    "failure_reason",
    "metadata",
];

/// The auth id of a test profile that owns test transaction `k`.
pub fn test_transaction_owner(model: &Model, k: u32) -> Uuid {
    let tp = model.plan.test_profiles as u32;
    auth_id(model, model.ranges.test_profiles + k % tp)
}

pub async fn write_transactions(client: &Client, model: &Model) -> Result<u64> {
    let mut copy = CopyIn::start(client, "public.transactions", TRANSACTION_COLUMNS).await?;
    let p2p_course = course_id(model, 0);
    for (pi, p) in model
        .payments
        .iter()
        .enumerate()
        .filter(|(_, p)| p.existing_tx)
    {
        let pi = pi as u32;
        let mut rng = Rng::new(model.seed, Stream::Transaction, (1u64 << 40) + pi as u64);
        let user = (p.is_customer
            && model.customers[p.payer as usize].existing == Existing::Profile)
            .then(|| auth_id(model, p.payer));
        let email = model.person(p.payer).email;
        let (name, kind) = match p.product {
            Product::P2p => ("Papers to Profits", "course"),
            Product::Canva => ("Canva Ebook", "ebook"),
        };
        let status = if rng.percent(70) { "completed" } else { "paid" };
        let fee = format!("{}.{:02}", p.amount * 23 / 1000, (p.amount * 23 / 10) % 100);
        let metadata = json!({"source": "xendit_sync", "email": email});
        copy.display(transaction_id(model, pi))
            .opt(user.map(|u| u.to_string()))
            .text(&format!("{}.00", p.amount))
            .text("PHP")
            .text(status)
            .text(if rng.percent(60) {
                "EWALLET"
            } else {
                "BANK_TRANSFER"
            })
            .text("xendit")
            .text(&p.external_id(pi))
            .text(&fee)
            .text(name)
            .text(name)
            .text(kind)
            .opt((p.product == Product::P2p).then(|| p2p_course.to_string()))
            .text(&pg_time(p.created_ms))
            .text(&pg_time(p.paid_ms))
            .text(&pg_time(p.paid_ms))
            .opt(p.settled.then(|| pg_time(p.paid_ms + DAY_MS)))
            .null()
            .null()
            .null()
            .null()
            .text(&metadata.to_string());
        copy.end_row().await?;
    }
    for k in 0..model.test_transactions as u32 {
        let mut rng = Rng::new(model.seed, Stream::Test, (2u64 << 32) + k as u64);
        let at = rng.range(1_672_531_200, NOW_MS / 1000) * 1000;
        let provider_id = match k % 3 {
            0 => Some(format!("test_{}", rng.hex(12))),
            1 => Some(format!("p2p-test-{k:04}")),
            _ => None,
        };
        copy.display(test_transaction_id(model, k))
            .display(test_transaction_owner(model, k))
            .text(if k % 4 == 0 { "1.00" } else { "1000.00" })
            .text("PHP")
            .text(if k % 5 == 0 { "pending" } else { "completed" })
            .text("EWALLET")
            .text(if k % 2 == 0 { "xendit" } else { "manual" })
            .opt(provider_id)
            .null()
            .text("Papers to Profits (test)")
            .text("Papers to Profits")
            .text("course")
            .display(p2p_course)
            .text(&pg_time(at))
            .text(&pg_time(at))
            .text(&pg_time(at))
            .null()
            .null()
            .null()
            .null()
            .null()
            .text(r#"{"test": true}"#);
        copy.end_row().await?;
    }
    copy.finish().await
}

const ENROLLMENT_COLUMNS: &[&str] = &[
    "id",
    "user_id",
    "course_id",
    "transaction_id",
    "status",
    "created_at",
    "updated_at",
    "start_date",
    "expiry_date",
    "completion_date",
    "progress",
    "last_activity_at",
    "notes",
    "metadata",
    "cohort_month",
    "cohort_quarter",
];
const LESSON_COLUMNS: &[&str] = &[
    "id",
    "user_id",
    "enrollment_id",
    "lesson_id",
    "status",
    "progress_percentage",
    "last_position_seconds",
    "completed_at",
    "updated_at",
];

/// An existing enrollment: (person, user id, transaction id, start time, progress).
struct OldEnrollment {
    id: Uuid,
    person: u32,
    user: Uuid,
    transaction: Option<Uuid>,
    start_ms: i64,
    progress: &'static str,
    test: bool,
}

fn old_enrollments(model: &Model) -> impl Iterator<Item = OldEnrollment> + '_ {
    let customers = model
        .customers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.enrolled)
        .map(|(i, c)| {
            let i = i as u32;
            let first = c.first_payment.map(|p| (p, &model.payments[p as usize]));
            OldEnrollment {
                id: enrollment_id(model, i),
                person: i,
                user: auth_id(model, i),
                transaction: first
                    .filter(|(_, p)| p.existing_tx)
                    .map(|(pi, _)| transaction_id(model, pi)),
                start_ms: first
                    .map(|(_, p)| p.paid_ms)
                    .unwrap_or(c.contact_created_ms)
                    + DAY_MS / 24,
                progress: progress(model, i),
                test: false,
            }
        });
    let tests = (0..model.plan.test_enrollments as u32).map(|k| {
        let person = model.ranges.test_profiles + k;
        OldEnrollment {
            id: enrollment_id(model, person),
            person,
            user: auth_id(model, person),
            transaction: ((k as usize) < model.test_transactions)
                .then(|| test_transaction_id(model, k)),
            start_ms: 1_700_000_000_000 + k as i64 * DAY_MS,
            progress: if k % 2 == 0 { "0" } else { "50" },
            test: true,
        }
    });
    customers.chain(tests)
}

/// The ids of the test enrollments (rows a correct migration deletes).
pub fn test_enrollment_ids(model: &Model) -> Vec<Uuid> {
    old_enrollments(model)
        .filter(|e| e.test)
        .map(|e| e.id)
        .collect()
}

pub async fn write_enrollments(
    client: &Client,
    model: &Model,
    tally: &mut Tally,
) -> Result<(u64, u64)> {
    let course = course_id(model, 0);
    let mut copy = CopyIn::start(client, "public.enrollments", ENROLLMENT_COLUMNS).await?;
    for e in old_enrollments(model) {
        let mut rng = Rng::new(
            model.seed,
            Stream::Enrollment,
            (2u64 << 40) + e.person as u64,
        );
        let start = manila(e.start_ms);
        let quarter = (start.month() - 1) / 3 + 1;
        let done = e.progress == "100";
        let activity =
            (e.progress != "0").then(|| rng.range(e.start_ms / 1000, NOW_MS / 1000) * 1000);
        if e.progress != "0" && !e.test {
            tally.add("enrollments_with_progress", 1);
        }
        copy.display(e.id)
            .display(e.user)
            .display(course)
            .opt(e.transaction.map(|t| t.to_string()))
            .text(if done { "completed" } else { "active" })
            .text(&pg_time(e.start_ms))
            .text(&pg_time(activity.unwrap_or(e.start_ms)))
            .text(&start.format("%Y-%m-%d").to_string())
            .null()
            .opt(
                activity
                    .filter(|_| done)
                    .map(|a| manila(a).format("%Y-%m-%d").to_string()),
            )
            .text(e.progress)
            .opt(activity.map(pg_time))
            .opt(rng.percent(5).then_some("asked for an extension"))
            .null()
            .text(&start.format("%Y-%m").to_string())
            .text(&format!("{}-Q{quarter}", start.year()));
        copy.end_row().await?;
    }
    let enrollments = copy.finish().await?;

    let mut lessons = CopyIn::start(client, "public.lesson_progress", LESSON_COLUMNS).await?;
    for e in old_enrollments(model).filter(|e| e.progress != "0") {
        let mut rng = Rng::new(model.seed, Stream::Lesson, e.person as u64);
        let n = if e.test { 2 } else { 1 + rng.below(3) };
        for l in 0..n {
            let finished = e.progress == "100" || l + 1 < n;
            let at = rng.range(e.start_ms / 1000, NOW_MS / 1000) * 1000;
            lessons
                .display(rng.uuid())
                .display(e.user)
                .display(e.id)
                .text(&format!("p2p-m{}-l{}", l / 4 + 1, l % 4 + 1))
                .text(if finished { "completed" } else { "in_progress" })
                .text(if finished { "100" } else { "40" })
                .display(rng.below(1800))
                .opt(finished.then(|| pg_time(at)))
                .text(&pg_time(at));
            lessons.end_row().await?;
            tally.add(
                if e.test {
                    "test_lesson_progress"
                } else {
                    "lesson_progress_on_kept_enrollments"
                },
                1,
            );
        }
    }
    let lesson_rows = lessons.finish().await?;
    Ok((enrollments, lesson_rows))
}

pub async fn write_user_tags(client: &Client, model: &Model, tally: &mut Tally) -> Result<u64> {
    let mut copy = CopyIn::start(
        client,
        "public.user_tags",
        &["id", "user_id", "tag", "created_at"],
    )
    .await?;
    for a in accounts(model).filter(|a| a.has_profile) {
        let mut rng = Rng::new(model.seed, Stream::Tag, a.person as u64);
        let tags: &[&str] = match a.role {
            Role::Customer(_) if rng.percent(30) => &["PaidP2P"],
            Role::Customer(_) => &[],
            Role::TestProfile(_) => {
                tally.add("test_user_tags", 2);
                &["test", "qa"]
            }
            _ => &["staff"],
        };
        for tag in tags {
            copy.display(rng.uuid())
                .display(a.id)
                .text(tag)
                .text(&pg_time(a.created_ms + DAY_MS));
            copy.end_row().await?;
        }
    }
    copy.finish().await
}

pub async fn write_leads(client: &Client, model: &Model, tally: &mut Tally) -> Result<(u64, u64)> {
    let plan = &model.plan;
    let tests: Vec<Account> = other_accounts(model)
        .into_iter()
        .filter(|a| matches!(a.role, Role::TestProfile(_)))
        .collect();
    let mut leads = CopyIn::start(
        client,
        "public.purchase_leads",
        &[
            "id",
            "email",
            "first_name",
            "last_name",
            "product_type",
            "status",
            "user_id",
            "transaction_id",
            "created_at",
        ],
    )
    .await?;
    let profiled: Vec<u32> = (0..model.customers.len() as u32)
        .filter(|&i| model.customers[i as usize].existing == Existing::Profile)
        .collect();
    for k in 0..plan.purchase_leads as u32 {
        let mut rng = Rng::new(model.seed, Stream::Lead, k as u64);
        if (k as usize) < plan.test_purchase_leads {
            let a = &tests[k as usize % tests.len()];
            tally.add("test_purchase_leads", 1);
            leads
                .display(rng.uuid())
                .text(&a.email)
                .opt(a.first.as_deref())
                .opt(a.last.as_deref())
                .text("course")
                .text("form_submitted")
                .display(a.id)
                .null()
                .text(&pg_time(a.created_ms + DAY_MS));
        } else {
            let i = *rng.pick(&profiled);
            let c = &model.customers[i as usize];
            let person = model.person(i);
            let tx = c
                .first_payment
                .filter(|&p| model.payments[p as usize].existing_tx && rng.percent(60))
                .map(|p| transaction_id(model, p));
            let linked = rng.percent(70);
            leads
                .display(rng.uuid())
                .text(&person.email)
                .text(&person.first)
                .text(&person.last)
                .text("course")
                .text(if tx.is_some() {
                    "payment_completed"
                } else {
                    "form_submitted"
                })
                .opt(linked.then(|| auth_id(model, i).to_string()))
                .opt(tx.map(|t| t.to_string()))
                .text(&pg_time(c.contact_created_ms));
        }
        leads.end_row().await?;
    }
    let lead_rows = leads.finish().await?;

    let mut ebooks = CopyIn::start(
        client,
        "public.ebook_contacts",
        &[
            "id",
            "email",
            "first_name",
            "last_name",
            "user_id",
            "transaction_id",
            "metadata",
            "created_at",
        ],
    )
    .await?;
    let mut canva: Vec<(u32, bool)> = model
        .payments
        .iter()
        .enumerate()
        .filter(|(_, p)| p.product == Product::Canva)
        .map(|(i, p)| (i as u32, p.existing_tx))
        .collect();
    canva.sort_by_key(|(_, existing)| !existing);
    let real = plan.ebook_contacts - plan.test_ebook_contacts;
    for k in 0..plan.ebook_contacts {
        let mut rng = Rng::new(model.seed, Stream::Ebook, k as u64);
        if k < plan.test_ebook_contacts {
            let a = &tests[k % tests.len()];
            tally.add("test_ebook_contacts", 1);
            ebooks
                .display(rng.uuid())
                .text(&a.email)
                .opt(a.first.as_deref())
                .opt(a.last.as_deref())
                .display(a.id)
                .null()
                .text(r#"{"source": "test"}"#)
                .text(&pg_time(a.created_ms));
        } else {
            let (pi, existing) = canva[(k - plan.test_ebook_contacts) % canva.len().max(1)];
            let p = &model.payments[pi as usize];
            let person = model.person(p.payer);
            let user = (p.is_customer
                && model.customers[p.payer as usize].existing == Existing::Profile)
                .then(|| auth_id(model, p.payer));
            ebooks
                .display(rng.uuid())
                .text(&person.email)
                .text(&person.first)
                .text(&person.last)
                .opt(user.map(|u| u.to_string()))
                .opt(existing.then(|| transaction_id(model, pi).to_string()))
                .text(r#"{"source": "canva"}"#)
                .text(&pg_time(p.paid_ms));
        }
        ebooks.end_row().await?;
    }
    let _ = real;
    let ebook_rows = ebooks.finish().await?;
    Ok((lead_rows, ebook_rows))
}
