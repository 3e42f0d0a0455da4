-- The headline numbers: what the load would leave in the database
WITH final AS (
    SELECT
        (SELECT count(*) FROM customers) AS customers,
        (SELECT count(*) FROM extract_unified_profiles WHERE id IN (SELECT id FROM profiles)) AS profiles_kept,
        (SELECT count(*) FROM diff_profiles_insert) AS profiles_new,
        (SELECT count(*) FROM diff_profiles_delete) AS profiles_deleted,
        (SELECT count(*) FROM auth_users) AS logins_to_create,
        (SELECT count(*) FROM transactions) AS transactions,
        (SELECT count(*) FROM enrollments) AS enrollments,
        (SELECT coalesce(sum(amount), 0) FROM transactions) AS amount_php
)

SELECT * FROM final
