-- Every source row accounted for: kept + merged + out of scope + rejected = source rows
WITH source AS (
    SELECT 'xendit' AS source_table, outcome FROM payments
    UNION ALL
    SELECT 'systemeio', outcome FROM contacts
),

final AS (
    SELECT
        source_table,
        count(*) AS source_rows,
        count(*) FILTER (WHERE outcome = 'kept') AS kept,
        count(*) FILTER (WHERE outcome = 'merged') AS merged,
        count(*) FILTER (WHERE outcome = 'out_of_scope') AS out_of_scope,
        count(*) FILTER (WHERE outcome = 'rejected') AS rejected
    FROM source
    GROUP BY source_table
)

SELECT * FROM final ORDER BY source_table DESC
