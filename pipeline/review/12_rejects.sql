-- Source rows not kept: rejected first, then out of scope, then merged (the first 1,000, source values cut at 300 characters; every row is in rejects.parquet)
-- The first 1,000 are chosen on narrow columns, and only their source values are read: a sort
-- of every reject with its whole source row would not fit the memory pool at scale.
WITH source AS (
    SELECT
        source_table,
        _source_row AS source_row,
        CASE outcome WHEN 'rejected' THEN 1 WHEN 'out_of_scope' THEN 2 ELSE 3 END AS outcome_order
    FROM rejects
),

first_rows AS (
    SELECT source_table, source_row, outcome_order
    FROM source
    ORDER BY outcome_order, source_table DESC, source_row
    LIMIT 1000
),

totals AS (
    SELECT count(*) AS total_rows FROM rejects
),

shown AS (
    SELECT
        f.outcome_order,
        r.source_table,
        r._source_row AS source_row,
        r.source_key,
        r.outcome,
        r.reason,
        CASE WHEN character_length(r.raw) > 300 THEN substr(r.raw, 1, 300) || '…' ELSE r.raw END AS raw
    FROM first_rows AS f
    JOIN rejects AS r ON r.source_table = f.source_table AND r._source_row = f.source_row
),

final AS (
    SELECT s.source_table, s.source_row, s.source_key, s.outcome, s.reason, s.raw, t.total_rows, s.outcome_order
    FROM totals AS t
    CROSS JOIN shown AS s
)

SELECT source_table, source_row, source_key, outcome, reason, raw, total_rows
FROM final
ORDER BY outcome_order, source_table DESC, source_row
