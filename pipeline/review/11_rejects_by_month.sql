-- Rejected source rows per reason and month of the row's creation (default_timezone)
WITH source AS (
    SELECT 'xendit' AS source_table, reason, created_utc FROM payments WHERE outcome = 'rejected'
    UNION ALL
    SELECT 'systemeio', reason, created_utc FROM contacts WHERE outcome = 'rejected'
),

renamed AS (
    SELECT
        s.source_table || ': ' || regexp_replace(s.reason, ' \(.*\)$| [0-9]+$', '') AS reason,
        coalesce(to_char(CAST(s.created_utc AS TIMESTAMP) + cfg.default_utc_offset_interval, '%Y-%m'), 'unknown') AS month
    FROM config AS cfg
    CROSS JOIN source AS s
),

final AS (
    SELECT month, reason, count(*) AS source_rows
    FROM renamed
    GROUP BY month, reason
)

SELECT * FROM final ORDER BY month, reason
