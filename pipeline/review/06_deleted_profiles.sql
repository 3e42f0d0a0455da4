-- Profiles to delete (test accounts and leftovers), with the transactions and enrollments deleted with them
WITH deleted AS (
    SELECT id, email, first_name, last_name, tier, created_at, last_active_at FROM diff_profiles_delete
),

transaction_rows AS (
    SELECT user_id, count(*) AS transactions, sum(amount) AS amount_php
    FROM diff_transactions_delete
    GROUP BY user_id
),

enrollment_rows AS (
    SELECT user_id, count(*) AS enrollments, max(progress) AS max_progress
    FROM diff_enrollments_delete
    GROUP BY user_id
),

final AS (
    SELECT
        d.email,
        d.first_name,
        d.last_name,
        d.tier,
        CAST(d.id AS VARCHAR) AS id,
        d.created_at,
        d.last_active_at,
        coalesce(t.transactions, 0) AS transactions_deleted,
        t.amount_php AS transactions_amount_php,
        coalesce(e.enrollments, 0) AS enrollments_deleted,
        e.max_progress AS enrollment_progress
    FROM deleted AS d
    LEFT JOIN transaction_rows AS t ON t.user_id = d.id
    LEFT JOIN enrollment_rows AS e ON e.user_id = d.id
)

SELECT * FROM final ORDER BY email, id
