-- payments: every xendit row, parsed, with its outcome: kept, merged (same External ID seen
-- before), out_of_scope (not paid, or a product we do not sell) or rejected (broken data).
--
-- Rules:
--   * email: the payer is `customer_email` ("Customer Email"), else `email`; trimmed and
--     lower-cased; valid means `local@domain.tld` (settings: email_pattern).
--   * status: trimmed and upper-cased; UNPAID (exports) means PENDING; paid = PAID or SETTLED
--     (settings: paid_statuses).
--   * product by description: contains "papers to profits" (any case) = p2p, contains "canva"
--     = canva, else other (out of scope). Settings: p2p_product_pattern, canva_product_pattern.
--   * amount: digits, `.` and `-` kept ("₱1,000.00" -> 1000.00); zero or negative is rejected.
--   * currency: trimmed, upper-cased, default PHP.
--   * timestamps: ISO 8601 with or without offset and milliseconds; without an offset the
--     time is in the row's `timezone` (pipeline/timezones.csv maps names to offsets), else
--     in default_timezone (Asia/Manila). '' (legacy exports) means missing.
--   * duplicates: among paid rows of a known product that pass every check, one row per
--     External ID is kept (SETTLED before PAID, then the lowest `_source_row`); the others
--     are merged into it.
WITH source AS (
    SELECT * FROM extract_xendit
),

renamed AS (
    SELECT
        _source_row,
        nullif(trim(external_id), '') AS external_id,
        nullif(trim(payment_id), '') AS invoice_id,
        status AS status_raw,
        description,
        amount AS amount_raw,
        fees AS fees_raw,
        coalesce(nullif(trim(customer_email), ''), email) AS email_raw,
        nullif(trim(customer_name), '') AS customer_name,
        nullif(trim(customer_phone), '') AS customer_phone,
        nullif(trim(payment_method), '') AS payment_method,
        nullif(trim(payment_channel), '') AS payment_channel,
        nullif(trim(failure_reason), '') AS failure_reason,
        currency AS currency_raw,
        nullif(trim(created), '') AS created_text,
        nullif(trim(updated), '') AS updated_text,
        nullif(trim(paid_at), '') AS paid_at_text,
        nullif(trim(settled_at), '') AS settled_at_text,
        nullif(trim(timezone), '') AS timezone_raw
    FROM source
),

zoned AS (
    -- the offset that naive timestamps of this row are written in
    SELECT
        r.*,
        CASE
            WHEN r.timezone_raw IS NULL THEN c.default_utc_offset
            WHEN tz.utc_offset IS NOT NULL THEN tz.utc_offset
            WHEN regexp_like(r.timezone_raw, '^[+-][0-9]{2}:[0-9]{2}$') THEN r.timezone_raw
        END AS utc_offset
    FROM config AS c
    CROSS JOIN renamed AS r
    LEFT JOIN timezones AS tz ON upper(trim(tz.zone)) = upper(r.timezone_raw)
),

cleaned AS (
    SELECT
        z._source_row,
        z.external_id,
        z.invoice_id,
        lower(trim(z.email_raw)) AS email,
        CASE upper(trim(z.status_raw))
            WHEN 'UNPAID' THEN 'PENDING'
            ELSE upper(trim(z.status_raw))
        END AS status,
        z.description,
        CASE
            WHEN strpos(lower(z.description), c.p2p_product_pattern) > 0 THEN 'p2p'
            WHEN strpos(lower(z.description), c.canva_product_pattern) > 0 THEN 'canva'
            ELSE 'other'
        END AS product,
        TRY_CAST(nullif(regexp_replace(z.amount_raw, '[^0-9.-]', '', 'g'), '') AS DECIMAL(38, 2)) AS amount_php,
        TRY_CAST(nullif(regexp_replace(z.fees_raw, '[^0-9.-]', '', 'g'), '') AS DECIMAL(38, 2)) AS fee_php,
        coalesce(upper(nullif(trim(z.currency_raw), '')), c.default_currency) AS currency,
        z.customer_name,
        z.customer_phone,
        z.payment_method,
        z.payment_channel,
        z.failure_reason,
        z.timezone_raw,
        z.utc_offset,
        z.amount_raw,
        z.created_text,
        z.updated_text,
        z.paid_at_text,
        z.settled_at_text,
        -- to_utc: a timestamp that ends in Z or an offset is read as written; a naive one is
        -- in the row's offset; NULL when missing or unreadable
        to_utc(z.created_text, z.utc_offset) AS created_utc,
        to_utc(z.updated_text, z.utc_offset) AS updated_utc,
        to_utc(z.paid_at_text, z.utc_offset) AS paid_at_utc,
        to_utc(z.settled_at_text, z.utc_offset) AS settled_at_utc,
        c.paid_statuses,
        c.email_pattern
    FROM config AS c
    CROSS JOIN zoned AS z
),

judged AS (
    -- why a row is not kept, if it is not. Out of scope comes before broken (the outcome
    -- takes the first reason that is set), so an unpaid row with a bad email counts as out
    -- of scope; within each column the first reason that applies is given.
    SELECT
        *,
        CASE
            WHEN NOT coalesce(array_has(paid_statuses, status), false)
                THEN 'not paid (status ' || coalesce(status, 'NULL') || ')'
            WHEN product = 'other' THEN 'other product (' || coalesce(description, 'no description') || ')'
        END AS out_of_scope_reason,
        CASE
            WHEN external_id IS NULL THEN 'missing External ID'
            WHEN email IS NULL THEN 'missing email'
            WHEN NOT regexp_like(email, email_pattern) THEN 'invalid email'
            WHEN amount_php IS NULL THEN 'unreadable amount (' || coalesce(amount_raw, 'NULL') || ')'
            WHEN amount_php <= 0 THEN 'amount not positive'
            WHEN utc_offset IS NULL THEN 'unknown timezone (' || timezone_raw || ')'
            WHEN created_text IS NOT NULL AND created_utc IS NULL THEN 'unreadable created timestamp'
            WHEN updated_text IS NOT NULL AND updated_utc IS NULL THEN 'unreadable updated timestamp'
            WHEN paid_at_text IS NOT NULL AND paid_at_utc IS NULL THEN 'unreadable paid timestamp'
            WHEN settled_at_text IS NOT NULL AND settled_at_utc IS NULL THEN 'unreadable settled timestamp'
        END AS rejected_reason
    FROM cleaned
),

kept_rows AS (
    -- per External ID, the candidate (neither out of scope nor rejected) that is kept: SETTLED
    -- before PAID, then the lowest _source_row. A GROUP BY rather than a window ranking the
    -- rows of each External ID: nearly every External ID has one row, and a window pays per
    -- group.
    SELECT
        external_id AS kept_external_id,
        coalesce(min(CASE WHEN status = 'SETTLED' THEN _source_row END), min(_source_row)) AS kept_source_row
    FROM judged
    WHERE out_of_scope_reason IS NULL AND rejected_reason IS NULL
    GROUP BY external_id
),

ranked AS (
    -- candidates with the row kept for their External ID (NULL for the others). The small
    -- side of a join comes first (see 01_config.sql).
    SELECT
        judged.*,
        k.kept_source_row
    FROM kept_rows AS k
    RIGHT JOIN judged
        ON k.kept_external_id = judged.external_id
        AND judged.out_of_scope_reason IS NULL AND judged.rejected_reason IS NULL
),

final AS (
    SELECT
        _source_row,
        external_id,
        invoice_id,
        email,
        status,
        product,
        description,
        amount_php,
        fee_php,
        currency,
        customer_name,
        customer_phone,
        payment_method,
        payment_channel,
        failure_reason,
        created_utc,
        updated_utc,
        paid_at_utc,
        settled_at_utc,
        -- when the money moved: paid, else settled, else created
        coalesce(paid_at_utc, settled_at_utc, created_utc) AS payment_utc,
        CASE
            WHEN out_of_scope_reason IS NOT NULL THEN 'out_of_scope'
            WHEN rejected_reason IS NOT NULL THEN 'rejected'
            WHEN _source_row = kept_source_row THEN 'kept'
            ELSE 'merged'
        END AS outcome,
        coalesce(
            out_of_scope_reason,
            rejected_reason,
            CASE WHEN _source_row <> kept_source_row THEN 'same External ID as row ' || CAST(kept_source_row AS VARCHAR) END
        ) AS reason
    FROM ranked
)

SELECT * FROM final
