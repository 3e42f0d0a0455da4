-- Transactions and enrollments to delete whose profile stays
WITH final AS (
    SELECT 'transactions' AS destination_table, CAST(id AS VARCHAR) AS id, CAST(user_id AS VARCHAR) AS user_id,
        payment_provider_id AS detail, amount AS amount_php
    FROM diff_transactions_delete AS t
    WHERE t.user_id IS NULL OR NOT EXISTS (SELECT 1 FROM diff_profiles_delete AS p WHERE p.id = t.user_id)
    UNION ALL
    SELECT 'enrollments', CAST(id AS VARCHAR), CAST(user_id AS VARCHAR),
        'progress ' || CAST(progress AS VARCHAR), CAST(NULL AS DECIMAL(12, 2))
    FROM diff_enrollments_delete AS e
    WHERE e.user_id IS NULL OR NOT EXISTS (SELECT 1 FROM diff_profiles_delete AS p WHERE p.id = e.user_id)
)

SELECT * FROM final ORDER BY destination_table DESC, user_id, id
