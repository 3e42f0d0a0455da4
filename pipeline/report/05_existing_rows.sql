-- Existing rows: kept + keep-listed + deleted = existing; staged = kept + keep-listed + new (auth.users: kept = logins of staged profiles, keep_listed = other logins, never changed or deleted)
WITH profile_rows AS (
    SELECT
        'unified_profiles' AS destination_table,
        (SELECT count(*) FROM extract_unified_profiles) AS existing,
        (SELECT count(*) FROM extract_unified_profiles WHERE id IN (SELECT profile_id FROM customers)) AS kept,
        (SELECT count(*) FROM extract_unified_profiles WHERE id IN (SELECT id FROM profiles) AND id NOT IN (SELECT profile_id FROM customers)) AS keep_listed,
        (SELECT count(*) FROM diff_profiles_delete) AS deleted,
        (SELECT count(*) FROM diff_profiles_insert) AS new,
        (SELECT count(*) FROM diff_profiles_update) AS updated,
        (SELECT count(*) FROM profiles) AS staged
),

transaction_rows AS (
    SELECT
        'transactions' AS destination_table,
        (SELECT count(*) FROM extract_transactions) AS existing,
        (SELECT count(*) FROM extract_transactions WHERE id IN (SELECT id FROM transactions)) AS kept,
        0 AS keep_listed,
        (SELECT count(*) FROM diff_transactions_delete) AS deleted,
        (SELECT count(*) FROM diff_transactions_insert) AS new,
        (SELECT count(*) FROM diff_transactions_update) AS updated,
        (SELECT count(*) FROM transactions) AS staged
),

enrollment_rows AS (
    SELECT
        'enrollments' AS destination_table,
        (SELECT count(*) FROM extract_enrollments) AS existing,
        (SELECT count(*) FROM extract_enrollments AS e WHERE e.id IN (SELECT id FROM enrollments) AND e.user_id IN (SELECT profile_id FROM customers)) AS kept,
        (SELECT count(*) FROM extract_enrollments AS e WHERE e.id IN (SELECT id FROM enrollments) AND e.user_id NOT IN (SELECT profile_id FROM customers)) AS keep_listed,
        (SELECT count(*) FROM diff_enrollments_delete) AS deleted,
        (SELECT count(*) FROM diff_enrollments_insert) AS new,
        (SELECT count(*) FROM diff_enrollments_update) AS updated,
        (SELECT count(*) FROM enrollments) AS staged
),

auth_rows AS (
    SELECT
        'auth.users' AS destination_table,
        (SELECT count(*) FROM extract_auth_users) AS existing,
        (SELECT count(*) FROM extract_auth_users WHERE id IN (SELECT id FROM profiles)) AS kept,
        (SELECT count(*) FROM extract_auth_users WHERE id NOT IN (SELECT id FROM profiles)) AS keep_listed,
        0 AS deleted,
        (SELECT count(*) FROM auth_users) AS new,
        0 AS updated,
        (SELECT count(*) FROM extract_auth_users) + (SELECT count(*) FROM auth_users) AS staged
),

final AS (
    SELECT 1 AS n, * FROM profile_rows
    UNION ALL SELECT 2, * FROM transaction_rows
    UNION ALL SELECT 3, * FROM enrollment_rows
    UNION ALL SELECT 4, * FROM auth_rows
)

-- UNION ALL gives no order of its own: the report must read the same on every run.
SELECT destination_table, existing, kept, keep_listed, deleted, new, updated, staged
FROM final
ORDER BY n
