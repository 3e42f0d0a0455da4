-- Current rows of the person that the load deletes, and their dependents in the staged tables (rows of other tables that reference them are listed by `cleanmig load`)
WITH deleted_profiles AS (
    SELECT d.id, d.email
    FROM person AS p
    JOIN diff_profiles_delete AS d ON lower(trim(d.email)) = p.email
),

ids AS (
    SELECT id FROM deleted_profiles
    UNION
    SELECT s.id FROM person AS p JOIN stage_profiles AS s ON s.email = p.email
),

final AS (
    SELECT 'unified_profiles' AS destination_table, id, email AS detail FROM deleted_profiles
    UNION ALL
    SELECT 'transactions', t.id, t.payment_provider_id
    FROM diff_transactions_delete AS t
    WHERE t.user_id IN (SELECT id FROM ids)
    UNION ALL
    SELECT 'enrollments', e.id, 'progress ' || CAST(e.progress AS VARCHAR)
    FROM diff_enrollments_delete AS e
    WHERE e.user_id IN (SELECT id FROM ids)
)

SELECT * FROM final ORDER BY destination_table DESC, id
