-- The staged profile: where its id comes from, and what the load does with it
WITH final AS (
    SELECT
        s.id,
        s.email,
        s.first_name,
        s.last_name,
        s.tier,
        s.cohort_date,
        s.acquisition_source,
        s.payment_source,
        CASE
            WHEN ep.id IS NOT NULL THEN 'kept from the existing unified_profiles row'
            WHEN ea.id IS NOT NULL THEN 'kept from the existing auth.users login'
            ELSE 'derived: uuid_v5(email)'
        END AS id_from,
        CASE
            WHEN i.id IS NOT NULL THEN 'insert'
            WHEN u.id IS NOT NULL THEN 'update'
            ELSE 'unchanged'
        END AS change,
        u.changed_columns
    FROM person AS p
    JOIN stage_profiles AS s ON s.email = p.email
    LEFT JOIN extract_unified_profiles AS ep ON ep.id = s.id
    LEFT JOIN extract_auth_users AS ea ON ea.id = s.id
    LEFT JOIN diff_profiles_insert AS i ON i.id = s.id
    LEFT JOIN diff_profiles_update AS u ON u.id = s.id
)

SELECT * FROM final ORDER BY id
