-- Staged enrollments of the person: where each id comes from, the progress kept, and the change
WITH profile AS (
    SELECT s.id FROM person AS p JOIN stage_profiles AS s ON s.email = p.email
),

final AS (
    SELECT
        e.id,
        e.course_id,
        e.transaction_id,
        e.status,
        e.start_date,
        e.cohort_month,
        e.progress,
        c.progress AS current_progress,
        CASE
            WHEN c.id IS NOT NULL THEN 'kept from the existing enrollment of this user and course'
            ELSE 'derived: uuid_v5(''enrollment:'' || user_id || '':'' || course_id)'
        END AS id_from,
        CASE
            WHEN i.id IS NOT NULL THEN 'insert'
            WHEN u.id IS NOT NULL THEN 'update'
            ELSE 'unchanged'
        END AS change,
        u.changed_columns
    FROM stage_enrollments AS e
    LEFT JOIN extract_enrollments AS c ON c.id = e.id
    LEFT JOIN diff_enrollments_insert AS i ON i.id = e.id
    LEFT JOIN diff_enrollments_update AS u ON u.id = e.id
    WHERE e.user_id IN (SELECT id FROM profile)
)

SELECT * FROM final ORDER BY start_date, id
