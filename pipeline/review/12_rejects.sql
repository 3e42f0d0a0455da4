-- Source rows not kept: rejected first, then out of scope, then merged (the first 1,000, source values cut at 300 characters; every row is in rejects.parquet)
WITH source AS (
    SELECT
        source_table,
        _source_row AS source_row,
        source_key,
        outcome,
        reason,
        CASE WHEN character_length(raw) > 300 THEN substr(raw, 1, 300) || '…' ELSE raw END AS raw,
        count(*) OVER () AS total_rows
    FROM rejects
),

final AS (
    SELECT *
    FROM source
    ORDER BY CASE outcome WHEN 'rejected' THEN 1 WHEN 'out_of_scope' THEN 2 ELSE 3 END, source_table DESC, source_row
    LIMIT 1000
)

SELECT * FROM final
ORDER BY CASE outcome WHEN 'rejected' THEN 1 WHEN 'out_of_scope' THEN 2 ELSE 3 END, source_table DESC, source_row
