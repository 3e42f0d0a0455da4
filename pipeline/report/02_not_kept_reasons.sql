-- Why source rows were not kept (details per row in rejects.parquet)
WITH source AS (
    SELECT source_table, outcome, regexp_replace(reason, ' \(.*\)$| [0-9]+$', '') AS reason
    FROM rejects
),

final AS (
    SELECT source_table, outcome, reason, count(*) AS source_rows
    FROM source
    GROUP BY source_table, outcome, reason
)

SELECT * FROM final ORDER BY source_table DESC, outcome, source_rows DESC, reason
