-- contacts: every systemeio row, parsed, with its outcome: kept (the contact a profile is
-- built from), merged (another row of the same email), out_of_scope (neither tagged as a
-- paid student nor a paid P2P payer) or rejected (tagged, but the email is broken).
--
-- Rules:
--   * email trimmed and lower-cased; valid means `local@domain.tld` (settings: email_pattern).
--   * tags: the `tags` text split on commas; compared lower-cased with spaces removed, so
--     "PaidP2P", " paidp2p" and "Paid P2P" are the same tag. Paid tags: settings.paid_tags.
--   * one contact per email is kept: the most recently updated (updated_at, else
--     created_at), then the lowest `_source_row`.
--   * timestamps without an offset are in default_timezone.
WITH source AS (
    SELECT * FROM extract_systemeio
),

renamed AS (
    SELECT
        _source_row,
        nullif(trim(contact_id), '') AS contact_id,
        email AS email_raw,
        nullif(trim(first_name), '') AS first_name,
        nullif(trim(last_name), '') AS last_name,
        nullif(trim(phone), '') AS phone,
        nullif(trim(tags), '') AS tags_text,
        nullif(trim(created_at), '') AS created_text,
        nullif(trim(updated_at), '') AS updated_text
    FROM source
),

cleaned AS (
    SELECT
        r._source_row,
        r.contact_id,
        lower(trim(r.email_raw)) AS email,
        r.first_name,
        r.last_name,
        r.phone,
        -- as written, with spaces around the commas removed
        regexp_replace(r.tags_text, '\s*,\s*', ',', 'g') AS tags_text,
        string_to_array(lower(regexp_replace(coalesce(r.tags_text, ''), '\s', '', 'g')), ',') AS tag_keys,
        -- to_utc: a timestamp that ends in Z or an offset is read as written; a naive one is
        -- in default_timezone; NULL when missing or unreadable
        to_utc(r.created_text, c.default_utc_offset) AS created_utc,
        to_utc(r.updated_text, c.default_utc_offset) AS updated_utc,
        c.paid_tags,
        c.email_pattern
    FROM config AS c
    CROSS JOIN renamed AS r
),

p2p_payers AS (
    SELECT DISTINCT email FROM payments WHERE outcome = 'kept' AND product = 'p2p'
),

flagged AS (
    SELECT
        c.*,
        array_has_any(c.tag_keys, c.paid_tags) AS is_paid_tagged,
        c.email IS NOT NULL AND regexp_like(c.email, c.email_pattern) AS is_valid_email,
        p.email IS NOT NULL AS is_p2p_payer
    FROM p2p_payers AS p
    RIGHT JOIN cleaned AS c ON p.email = c.email
),

emails AS (
    -- per valid email: whether any of its rows is tagged as paid, and the row kept: the most
    -- recently updated (a row with no time only when none has one), then the lowest
    -- _source_row. One GROUP BY rather than windows over the rows of each email: a window
    -- without ORDER BY holds its whole input in memory, and one with ORDER BY pays per email,
    -- when nearly every email has one row.
    SELECT
        email AS group_email,
        bool_or(is_paid_tagged) AS any_paid_tag,
        first_value(_source_row ORDER BY coalesce(updated_utc, created_utc) DESC NULLS LAST, _source_row) AS kept_source_row
    FROM flagged
    WHERE is_valid_email
    GROUP BY email
),

ranked AS (
    -- the small side of a join comes first (see 01_config.sql)
    SELECT
        flagged.*,
        e.kept_source_row,
        CASE WHEN is_valid_email THEN
            coalesce(e.any_paid_tag, false)
        END AS email_is_paid_tagged
    FROM emails AS e
    RIGHT JOIN flagged ON e.group_email = flagged.email AND flagged.is_valid_email
),

final AS (
    SELECT
        _source_row,
        contact_id,
        email,
        first_name,
        last_name,
        phone,
        tags_text,
        tag_keys,
        created_utc,
        updated_utc,
        is_paid_tagged,
        CASE
            WHEN is_valid_email AND (email_is_paid_tagged OR is_p2p_payer) AND _source_row = kept_source_row THEN 'kept'
            WHEN is_valid_email AND (email_is_paid_tagged OR is_p2p_payer) THEN 'merged'
            WHEN is_paid_tagged THEN 'rejected'
            ELSE 'out_of_scope'
        END AS outcome,
        CASE
            WHEN is_valid_email AND (email_is_paid_tagged OR is_p2p_payer) AND _source_row = kept_source_row THEN NULL
            WHEN is_valid_email AND (email_is_paid_tagged OR is_p2p_payer)
                THEN 'same email as row ' || CAST(kept_source_row AS VARCHAR)
            WHEN is_paid_tagged AND email IS NULL THEN 'missing email'
            WHEN is_paid_tagged THEN 'invalid email'
            ELSE 'not tagged as paid and no paid P2P payment'
        END AS reason
    FROM ranked
)

SELECT * FROM final
