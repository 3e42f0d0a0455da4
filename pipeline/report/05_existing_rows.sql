-- Existing rows: kept + keep-listed + deleted = existing; staged = kept + keep-listed + new (auth.users: kept = logins of staged profiles, keep_listed = other logins, never changed or deleted)
-- Each existing row is looked up once in each set it is counted against (one LEFT JOIN per
-- set, not one join per count), and a table's counts are taken together with FILTER.
WITH customer_ids AS (
    SELECT DISTINCT profile_id AS id FROM customers
),

staged_profile_ids AS (
    SELECT DISTINCT id FROM profiles
),

profile_counts AS (
    SELECT
        count(*) AS existing,
        count(*) FILTER (WHERE c.id IS NOT NULL) AS kept,
        count(*) FILTER (WHERE s.id IS NOT NULL AND c.id IS NULL) AS keep_listed
    FROM extract_unified_profiles AS e
    LEFT JOIN customer_ids AS c ON c.id = e.id
    LEFT JOIN staged_profile_ids AS s ON s.id = e.id
),

profile_rows AS (
    SELECT
        'unified_profiles' AS destination_table,
        existing,
        kept,
        keep_listed,
        (SELECT count(*) FROM diff_profiles_delete) AS deleted,
        (SELECT count(*) FROM diff_profiles_insert) AS new,
        (SELECT count(*) FROM diff_profiles_update) AS updated,
        (SELECT count(*) FROM profiles) AS staged
    FROM profile_counts
),

transaction_counts AS (
    SELECT
        count(*) AS existing,
        count(*) FILTER (WHERE s.id IS NOT NULL) AS kept
    FROM extract_transactions AS e
    LEFT JOIN (SELECT DISTINCT id FROM transactions) AS s ON s.id = e.id
),

transaction_rows AS (
    SELECT
        'transactions' AS destination_table,
        existing,
        kept,
        0 AS keep_listed,
        (SELECT count(*) FROM diff_transactions_delete) AS deleted,
        (SELECT count(*) FROM diff_transactions_insert) AS new,
        (SELECT count(*) FROM diff_transactions_update) AS updated,
        (SELECT count(*) FROM transactions) AS staged
    FROM transaction_counts
),

enrollment_counts AS (
    SELECT
        count(*) AS existing,
        count(*) FILTER (WHERE s.id IS NOT NULL AND c.id IS NOT NULL) AS kept,
        count(*) FILTER (WHERE s.id IS NOT NULL AND c.id IS NULL) AS keep_listed
    FROM extract_enrollments AS e
    LEFT JOIN (SELECT DISTINCT id FROM enrollments) AS s ON s.id = e.id
    LEFT JOIN customer_ids AS c ON c.id = e.user_id
),

enrollment_rows AS (
    SELECT
        'enrollments' AS destination_table,
        existing,
        kept,
        keep_listed,
        (SELECT count(*) FROM diff_enrollments_delete) AS deleted,
        (SELECT count(*) FROM diff_enrollments_insert) AS new,
        (SELECT count(*) FROM diff_enrollments_update) AS updated,
        (SELECT count(*) FROM enrollments) AS staged
    FROM enrollment_counts
),

auth_counts AS (
    SELECT
        count(*) AS existing,
        count(*) FILTER (WHERE s.id IS NOT NULL) AS kept,
        count(*) FILTER (WHERE s.id IS NULL) AS keep_listed
    FROM extract_auth_users AS a
    LEFT JOIN staged_profile_ids AS s ON s.id = a.id
),

auth_rows AS (
    SELECT
        'auth.users' AS destination_table,
        existing,
        kept,
        keep_listed,
        0 AS deleted,
        (SELECT count(*) FROM auth_users) AS new,
        0 AS updated,
        existing + (SELECT count(*) FROM auth_users) AS staged
    FROM auth_counts
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
