-- What changes in the database, per destination table (auth.users: existing logins are never changed)
WITH counts AS (
    SELECT 1 AS n, 'unified_profiles' AS destination_table,
        (SELECT count(*) FROM diff_profiles_insert) AS inserted,
        (SELECT count(*) FROM diff_profiles_update) AS updated,
        (SELECT count(*) FROM diff_profiles_delete) AS deleted,
        (SELECT count(*) FROM profiles) AS staged
    UNION ALL SELECT 2, 'transactions',
        (SELECT count(*) FROM diff_transactions_insert),
        (SELECT count(*) FROM diff_transactions_update),
        (SELECT count(*) FROM diff_transactions_delete),
        (SELECT count(*) FROM transactions)
    UNION ALL SELECT 3, 'enrollments',
        (SELECT count(*) FROM diff_enrollments_insert),
        (SELECT count(*) FROM diff_enrollments_update),
        (SELECT count(*) FROM diff_enrollments_delete),
        (SELECT count(*) FROM enrollments)
    UNION ALL SELECT 4, 'auth.users',
        (SELECT count(*) FROM diff_auth_users_insert),
        0,
        0,
        (SELECT count(*) FROM extract_auth_users) + (SELECT count(*) FROM diff_auth_users_insert)
    UNION ALL SELECT 5, 'auth.identities',
        (SELECT count(*) FROM diff_auth_identities_insert),
        0,
        0,
        (SELECT count(*) FROM extract_auth_identities) + (SELECT count(*) FROM diff_auth_identities_insert)
),

final AS (
    SELECT n, destination_table, inserted, updated, deleted, staged - inserted - updated AS unchanged
    FROM counts
)

SELECT destination_table, inserted, updated, deleted, unchanged FROM final ORDER BY n
