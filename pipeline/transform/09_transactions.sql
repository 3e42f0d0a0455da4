-- transactions: the complete clean contents of transactions, in the full shape (with
-- api_source, last_api_sync_at, api_sync_version, processed_at, fiscal_year, fiscal_quarter).
--
-- Rules:
--   * every kept paid Xendit payment of a known product: P2P and Canva alike (a Canva sale
--     is real money and must not vanish).
--   * id: the existing transaction whose payment_provider_id is the External ID keeps its
--     id; otherwise uuid_v5('transaction:' || External ID).
--   * user_id: the profile with the payer's email; a buyer without a profile (Canva only)
--     is kept with user_id NULL and the email in metadata.
--   * status PAID or SETTLED as normalised; payment_provider 'xendit',
--     payment_provider_id = External ID; product_id the P2P course for P2P payments.
--   * fiscal_year / fiscal_quarter from the payment day (default_timezone); the fiscal year
--     starts in settings.fiscal_year_start_month and is named by the calendar year it ends in.
WITH source AS (
    SELECT * FROM payments WHERE outcome = 'kept' AND product IN ('p2p', 'canva')
),

existing AS (
    SELECT payment_provider_id, id
    FROM (
        SELECT
            payment_provider_id, id,
            row_number() OVER (PARTITION BY payment_provider_id ORDER BY created_at NULLS LAST, id) AS n
        FROM extract_transactions
        WHERE payment_provider_id IS NOT NULL
    ) AS t
    WHERE n = 1
),

course AS (
    SELECT id FROM p2p_course
),

localised AS (
    SELECT
        s.*,
        s.payment_utc + cfg.default_utc_offset_interval AS payment_local,
        cfg.fiscal_year_start_month AS fy_start,
        cfg.now_utc
    FROM config AS cfg
    CROSS JOIN source AS s
),

final AS (
    SELECT
        coalesce(e.id, uuid_v5('transaction:' || s.external_id)) AS id,
        p.id AS user_id,
        s.amount_php AS amount,
        s.currency,
        s.status,
        s.payment_method,
        'xendit' AS payment_provider,
        s.external_id AS payment_provider_id,
        s.fee_php AS payment_provider_fee,
        s.description,
        CASE s.product WHEN 'p2p' THEN 'Papers to Profits' WHEN 'canva' THEN 'Canva ebook' END AS product_name,
        CASE s.product WHEN 'p2p' THEN 'course' WHEN 'canva' THEN 'ebook' END AS product_type,
        CASE s.product WHEN 'p2p' THEN (SELECT max(id) FROM course) END AS product_id,
        coalesce(s.created_utc, s.payment_utc, s.now_utc) AS created_at,
        coalesce(s.updated_utc, s.settled_at_utc, s.paid_at_utc, s.created_utc, s.now_utc) AS updated_at,
        coalesce(s.paid_at_utc, s.settled_at_utc) AS paid_at,
        s.settled_at_utc AS settled_at,
        CAST(NULL AS TIMESTAMP) AS cancelled_at,
        CAST(NULL AS TIMESTAMP) AS refunded_at,
        CAST(NULL AS TIMESTAMP) AS failed_at,
        s.failure_reason,
        json_object(
            'email', s.email,
            'customer_name', s.customer_name,
            'invoice_id', s.invoice_id,
            'product', s.product,
            'payment_channel', s.payment_channel
        ) AS metadata,
        'xendit' AS api_source,
        s.now_utc AS last_api_sync_at,
        1 AS api_sync_version,
        s.now_utc AS processed_at,
        CASE
            WHEN s.fy_start > 1 AND date_part('month', s.payment_local) >= s.fy_start THEN date_part('year', s.payment_local) + 1
            ELSE date_part('year', s.payment_local)
        END AS fiscal_year,
        CAST(floor(((date_part('month', s.payment_local) - s.fy_start + 12) % 12) / 3) AS INT) + 1 AS fiscal_quarter
    FROM localised AS s
    LEFT JOIN existing AS e ON e.payment_provider_id = s.external_id
    LEFT JOIN profiles AS p ON p.email = s.email
)

SELECT * FROM final
