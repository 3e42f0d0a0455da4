-- customers: one row per paying P2P student, by email. A customer is an email of a
-- systemeio contact tagged as paid (settings.paid_tags) or of a kept paid P2P payment
-- (amount > 0). Existing rows are matched by email, compared lower-cased and trimmed.
WITH source_payments AS (
    SELECT * FROM payments WHERE outcome = 'kept' AND product = 'p2p'
),

source_contacts AS (
    SELECT * FROM contacts WHERE outcome IN ('kept', 'merged')
),

paid AS (
    SELECT
        email,
        count(*) AS p2p_payments,
        min(payment_utc) AS first_p2p_payment_utc,
        min(created_utc) AS first_p2p_created_utc,
        max(coalesce(updated_utc, settled_at_utc, paid_at_utc, created_utc)) AS last_p2p_update_utc
    FROM source_payments
    GROUP BY email
),

first_payment AS (
    -- the earliest paid P2P payment of each email: the enrollment's transaction
    SELECT email, external_id, customer_name, customer_phone
    FROM (
        SELECT
            email, external_id, customer_name, customer_phone,
            row_number() OVER (PARTITION BY email ORDER BY payment_utc NULLS LAST, external_id) AS n
        FROM source_payments
    ) AS t
    WHERE n = 1
),

named_payment AS (
    -- the latest payment that carries a customer name / phone, for payers without a contact
    SELECT email, customer_name, customer_phone
    FROM (
        SELECT
            email, customer_name, customer_phone,
            row_number() OVER (
                PARTITION BY email
                ORDER BY CASE WHEN customer_name IS NULL THEN 1 ELSE 0 END, payment_utc DESC NULLS LAST, external_id, _source_row
            ) AS n
        FROM payments
        WHERE outcome IN ('kept', 'merged') AND product = 'p2p'
    ) AS t
    WHERE n = 1
),

contact AS (
    SELECT * FROM source_contacts WHERE outcome = 'kept'
),

contact_tags AS (
    -- every tag of every contact row of the email, each once
    SELECT
        email,
        bool_or(is_paid_tagged) AS is_paid_tagged,
        min(created_utc) AS first_contact_created_utc,
        max(coalesce(updated_utc, created_utc)) AS last_contact_update_utc
    FROM source_contacts
    GROUP BY email
),

emails AS (
    SELECT email FROM contact_tags WHERE is_paid_tagged
    UNION
    SELECT email FROM paid
),

existing_auth AS (
    -- the existing login of each email (the oldest if Supabase holds the email twice)
    SELECT email, id, created_at
    FROM (
        SELECT
            lower(trim(email)) AS email, id, created_at,
            row_number() OVER (PARTITION BY lower(trim(email)) ORDER BY created_at NULLS LAST, id) AS n
        FROM extract_auth_users
        WHERE email IS NOT NULL
    ) AS t
    WHERE n = 1
),

existing_profile AS (
    SELECT *
    FROM (
        SELECT
            p.*,
            lower(trim(p.email)) AS email_key,
            row_number() OVER (PARTITION BY lower(trim(p.email)) ORDER BY p.created_at, p.id) AS n
        FROM extract_unified_profiles AS p
    ) AS t
    WHERE n = 1
),

joined AS (
    SELECT
        e.email,
        coalesce(a.id, uuid_v5(e.email)) AS profile_id,
        a.id AS existing_auth_id,
        a.created_at AS existing_auth_created_at,
        ep.id AS existing_profile_id,
        coalesce(ct.is_paid_tagged, false) AS is_paid_tagged,
        p.email IS NOT NULL AS is_p2p_payer,
        coalesce(p.p2p_payments, 0) AS p2p_payments,
        p.first_p2p_payment_utc,
        p.first_p2p_created_utc,
        p.last_p2p_update_utc,
        fp.external_id AS first_p2p_external_id,
        c._source_row AS contact_source_row,
        c.contact_id,
        c.first_name AS contact_first_name,
        c.last_name AS contact_last_name,
        c.phone AS contact_phone,
        c.tags_text AS contact_tags_text,
        ct.first_contact_created_utc,
        ct.last_contact_update_utc,
        np.customer_name AS payment_customer_name,
        np.customer_phone AS payment_customer_phone
    FROM emails AS e
    LEFT JOIN existing_auth AS a ON a.email = e.email
    LEFT JOIN existing_profile AS ep ON ep.email_key = e.email
    LEFT JOIN contact_tags AS ct ON ct.email = e.email
    LEFT JOIN contact AS c ON c.email = e.email
    LEFT JOIN paid AS p ON p.email = e.email
    LEFT JOIN first_payment AS fp ON fp.email = e.email
    LEFT JOIN named_payment AS np ON np.email = e.email
),

final AS (
    SELECT
        *,
        CASE
            WHEN is_paid_tagged AND is_p2p_payer THEN 'tagged_and_paid'
            WHEN is_paid_tagged THEN 'tag_only'
            ELSE 'payment_only'
        END AS evidence,
        -- names: the contact's, else the Xendit customer name split at its last space
        -- ("Ma. Luisa Santos" -> "Ma. Luisa" / "Santos")
        CASE
            WHEN contact_first_name IS NOT NULL OR contact_last_name IS NOT NULL THEN contact_first_name
            WHEN strpos(payment_customer_name, ' ') > 0
                THEN regexp_replace(payment_customer_name, '\s+\S+$', '')
            ELSE payment_customer_name
        END AS first_name,
        CASE
            WHEN contact_first_name IS NOT NULL OR contact_last_name IS NOT NULL THEN contact_last_name
            WHEN strpos(payment_customer_name, ' ') > 0
                THEN regexp_replace(payment_customer_name, '^.*\s', '')
        END AS last_name,
        coalesce(contact_phone, payment_customer_phone) AS phone
    FROM joined
)

SELECT * FROM final
