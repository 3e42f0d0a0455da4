-- Staged transactions of the person (by profile, or from the person's Xendit rows): where each id comes from, and the change
WITH profile AS (
    SELECT s.id FROM person AS p JOIN stage_profiles AS s ON s.email = p.email
),

matched AS (
    SELECT t.*
    FROM stage_transactions AS t
    WHERE t.user_id IN (SELECT id FROM profile)
        OR t.payment_provider_id IN (SELECT external_id FROM xendit_rows)
),

final AS (
    SELECT
        t.id,
        t.payment_provider_id,
        t.product_type,
        t.amount AS amount_php,
        t.status,
        t.paid_at,
        t.user_id,
        CASE
            WHEN c.id IS NOT NULL THEN 'kept from the existing transaction of this External ID'
            ELSE 'derived: uuid_v5(''transaction:'' || External ID)'
        END AS id_from,
        CASE
            WHEN i.id IS NOT NULL THEN 'insert'
            WHEN u.id IS NOT NULL THEN 'update'
            ELSE 'unchanged'
        END AS change,
        u.changed_columns
    FROM matched AS t
    LEFT JOIN extract_transactions AS c ON c.id = t.id
    LEFT JOIN diff_transactions_insert AS i ON i.id = t.id
    LEFT JOIN diff_transactions_update AS u ON u.id = t.id
)

SELECT * FROM final ORDER BY paid_at, id
