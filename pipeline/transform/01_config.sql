-- config: pipeline/settings.csv as one typed row, joined by the rules below.
-- Edit settings.csv, not this file, to change a setting.
-- Join it first: `FROM config AS c CROSS JOIN big AS b`. DataFusion's cross join buffers its
-- left input and emits one batch per left row, so `big CROSS JOIN config` turns a large table
-- into one-row batches (measured: 03_payments ran 6x slower that way).
-- Likewise the small side of any join comes first: `small RIGHT JOIN big`, not `big LEFT JOIN
-- small`. A hash join keeps its left input in memory, and the planner knows no sizes to swap
-- them by when both sides are computed (measured: 03_payments at scale 300 peaked at 2.0 GB
-- with the payments on the left, 0.3 GB with the External IDs they group into).
WITH source AS (
    SELECT trim(name) AS name, trim(value) AS value FROM settings
),

pivoted AS (
    SELECT
        max(CASE WHEN name = 'p2p_course_slug' THEN value END) AS p2p_course_slug,
        max(CASE WHEN name = 'p2p_course_title' THEN value END) AS p2p_course_title,
        max(CASE WHEN name = 'p2p_product_pattern' THEN value END) AS p2p_product_pattern,
        max(CASE WHEN name = 'canva_product_pattern' THEN value END) AS canva_product_pattern,
        max(CASE WHEN name = 'paid_statuses' THEN value END) AS paid_statuses,
        max(CASE WHEN name = 'paid_tags' THEN value END) AS paid_tags,
        max(CASE WHEN name = 'suspicious_tags' THEN value END) AS suspicious_tags,
        max(CASE WHEN name = 'enroll_tag_only' THEN value END) AS enroll_tag_only,
        max(CASE WHEN name = 'fiscal_year_start_month' THEN value END) AS fiscal_year_start_month,
        max(CASE WHEN name = 'default_timezone' THEN value END) AS default_timezone,
        max(CASE WHEN name = 'default_currency' THEN value END) AS default_currency,
        max(CASE WHEN name = 'email_pattern' THEN value END) AS email_pattern
    FROM source
),

final AS (
    SELECT
        coalesce(p2p_course_slug, 'papers-to-profits') AS p2p_course_slug,
        coalesce(p2p_course_title, 'Papers to Profits') AS p2p_course_title,
        lower(coalesce(p2p_product_pattern, 'papers to profits')) AS p2p_product_pattern,
        lower(coalesce(canva_product_pattern, 'canva')) AS canva_product_pattern,
        -- lists are `|`-separated; statuses compare upper-cased, tags lower-cased without spaces
        string_to_array(upper(regexp_replace(coalesce(paid_statuses, 'PAID|SETTLED'), '\s', '', 'g')), '|') AS paid_statuses,
        string_to_array(lower(regexp_replace(coalesce(paid_tags, 'PaidP2P'), '\s', '', 'g')), '|') AS paid_tags,
        string_to_array(lower(regexp_replace(coalesce(suspicious_tags, 'Imported'), '\s', '', 'g')), '|') AS suspicious_tags,
        lower(coalesce(enroll_tag_only, 'true')) IN ('true', 'yes', '1', 'on') AS enroll_tag_only,
        CAST(coalesce(fiscal_year_start_month, '1') AS INT) AS fiscal_year_start_month,
        coalesce(default_timezone, 'Asia/Manila') AS default_timezone,
        upper(coalesce(default_currency, 'PHP')) AS default_currency,
        -- a valid email matches this regular expression (local@domain.tld)
        coalesce(email_pattern, '^[^@\s]+@[^@\s]+\.[^@\s.]+$') AS email_pattern,
        coalesce(tz.utc_offset, '+08:00') AS default_utc_offset,
        -- the same offset as an interval, to turn UTC times into local days
        CAST(
            CAST(
                (CASE WHEN substr(coalesce(tz.utc_offset, '+08:00'), 1, 1) = '-' THEN -1 ELSE 1 END)
                * (CAST(substr(coalesce(tz.utc_offset, '+08:00'), 2, 2) AS INT) * 60
                   + CAST(substr(coalesce(tz.utc_offset, '+08:00'), 5, 2) AS INT))
                AS VARCHAR
            ) || ' minutes'
            AS INTERVAL
        ) AS default_utc_offset_interval,
        (SELECT extracted_at FROM extraction) AS now_utc
    FROM pivoted
    LEFT JOIN timezones AS tz
        ON upper(trim(tz.zone)) = upper(coalesce(pivoted.default_timezone, 'Asia/Manila'))
)

SELECT * FROM final
