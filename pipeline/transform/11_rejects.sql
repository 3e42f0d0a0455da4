-- rejects: every source row that is not kept, with why: merged (a duplicate of a kept row),
-- out_of_scope (not paid, other product, contact neither tagged nor paying) or rejected
-- (broken data). `raw` holds the row's source values as JSON text.
WITH payments_not_kept AS (
    SELECT
        'xendit' AS source_table,
        p._source_row,
        p.external_id AS source_key,
        p.outcome,
        p.reason,
        r.raw
    FROM payments AS p
    JOIN raw_xendit AS r ON r._source_row = p._source_row
    WHERE p.outcome <> 'kept'
),

contacts_not_kept AS (
    SELECT
        'systemeio' AS source_table,
        c._source_row,
        c.email AS source_key,
        c.outcome,
        c.reason,
        r.raw
    FROM contacts AS c
    JOIN raw_systemeio AS r ON r._source_row = c._source_row
    WHERE c.outcome <> 'kept'
),

final AS (
    SELECT * FROM payments_not_kept
    UNION ALL
    SELECT * FROM contacts_not_kept
)

SELECT * FROM final
