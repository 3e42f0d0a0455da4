-- Where every source row went: kept, merged, out of scope or rejected, with the reason
WITH source AS (
    SELECT 'xendit' AS source_table, outcome, reason FROM payments
    UNION ALL
    SELECT 'systemeio', outcome, reason FROM contacts
),

renamed AS (
    SELECT
        source_table,
        outcome,
        -- the reason without its row-specific detail ("same External ID as row 12" -> "same External ID as row")
        coalesce(regexp_replace(reason, ' \(.*\)$| [0-9]+$', ''), 'kept') AS reason
    FROM source
),

final AS (
    SELECT source_table, outcome, reason, count(*) AS source_rows
    FROM renamed
    GROUP BY source_table, outcome, reason
)

SELECT * FROM final
ORDER BY source_table DESC,
    CASE outcome WHEN 'kept' THEN 1 WHEN 'merged' THEN 2 WHEN 'out_of_scope' THEN 3 ELSE 4 END,
    source_rows DESC, reason
