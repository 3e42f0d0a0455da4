-- enrollments: the complete clean contents of enrollments.
--
-- Rules:
--   * one enrollment in the P2P course (p2p_course.sql) per customer with a paid P2P payment,
--     linked to their earliest paid P2P transaction; start_date, cohort_month (YYYY-MM) and
--     cohort_quarter (YYYY-Qn) from that payment's day (default_timezone).
--   * a customer tagged as paid with no Xendit payment is enrolled too, with transaction_id
--     NULL and start_date = the profile's cohort_date (settings.enroll_tag_only; 'false'
--     turns this off).
--   * id: the existing enrollment of the same (user_id, course_id) keeps its id, else
--     uuid_v5('enrollment:' || user_id || ':' || course_id).
--   * columns the app owns (progress, last_activity_at, completion_date, notes) and
--     status, created_at, updated_at, expiry_date are carried over from the existing
--     enrollment; a new enrollment is 'active'.
--   * keep-listed profiles (kept as they are) keep their existing enrollments; the
--     transaction link stays only if that transaction is in the clean set.
WITH source AS (
    SELECT c.*
    FROM config AS cfg
    CROSS JOIN customers AS c
    WHERE c.is_p2p_payer OR (c.is_paid_tagged AND cfg.enroll_tag_only)
),

course AS (
    SELECT id FROM p2p_course
),

existing AS (
    SELECT * FROM extract_enrollments
),

clean AS (
    SELECT
        coalesce(e.id, uuid_v5('enrollment:' || s.profile_id || ':' || c.id)) AS id,
        s.profile_id AS user_id,
        c.id AS course_id,
        t.id AS transaction_id,
        coalesce(e.status, 'active') AS status,
        coalesce(e.created_at, s.first_p2p_payment_utc, p.created_at, cfg.now_utc) AS created_at,
        coalesce(e.updated_at, s.first_p2p_payment_utc, p.created_at, cfg.now_utc) AS updated_at,
        coalesce(CAST(s.first_p2p_payment_utc + cfg.default_utc_offset_interval AS DATE), p.cohort_date) AS start_date,
        e.expiry_date,
        e.completion_date,
        coalesce(e.progress, 0) AS progress,
        e.last_activity_at,
        e.notes,
        json_object('evidence', s.evidence, 'payment_provider_id', s.first_p2p_external_id) AS metadata
    FROM config AS cfg
    CROSS JOIN course AS c
    CROSS JOIN source AS s
    JOIN profiles AS p ON p.id = s.profile_id
    LEFT JOIN transactions AS t ON t.payment_provider_id = s.first_p2p_external_id
    LEFT JOIN existing AS e ON e.user_id = s.profile_id AND e.course_id = c.id
),

kept_as_is AS (
    SELECT
        e.id, e.user_id, e.course_id,
        t.id AS transaction_id,
        e.status, e.created_at, e.updated_at, e.start_date, e.expiry_date, e.completion_date,
        e.progress, e.last_activity_at, e.notes, e.metadata, e.cohort_month, e.cohort_quarter
    FROM existing AS e
    LEFT JOIN transactions AS t ON t.id = e.transaction_id
    WHERE e.user_id IN (SELECT id FROM profiles)
        AND NOT EXISTS (SELECT 1 FROM source AS s WHERE s.profile_id = e.user_id)
),

final AS (
    SELECT
        id, user_id, course_id, transaction_id, status, created_at, updated_at, start_date,
        expiry_date, completion_date, progress, last_activity_at, notes, metadata,
        to_char(start_date, '%Y-%m') AS cohort_month,
        CAST(date_part('year', start_date) AS VARCHAR) || '-Q'
            || CAST(CAST(floor((date_part('month', start_date) - 1) / 3) AS INT) + 1 AS VARCHAR) AS cohort_quarter
    FROM clean
    UNION ALL
    SELECT * FROM kept_as_is
)

SELECT * FROM final
