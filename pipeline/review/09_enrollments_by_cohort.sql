-- Enrollments per cohort month: new ones (to insert) and those that exist already
WITH source AS (
    SELECT
        e.cohort_month,
        CASE WHEN i.id IS NOT NULL THEN 'new' ELSE 'existing' END AS kind
    FROM enrollments AS e
    LEFT JOIN diff_enrollments_insert AS i ON i.id = e.id
),

final AS (
    SELECT cohort_month, kind, count(*) AS enrollments
    FROM source
    WHERE cohort_month IS NOT NULL
    GROUP BY cohort_month, kind
)

SELECT * FROM final ORDER BY cohort_month, kind
