-- Updated rows per column: how many rows change in each column
WITH source AS (
    SELECT 'unified_profiles' AS destination_table, changed_columns FROM diff_profiles_update
    UNION ALL
    SELECT 'transactions', changed_columns FROM diff_transactions_update
    UNION ALL
    SELECT 'enrollments', changed_columns FROM diff_enrollments_update
),

columns AS (
    SELECT destination_table, unnest(string_to_array(changed_columns, ',')) AS column_name
    FROM source
),

final AS (
    SELECT destination_table, column_name, count(*) AS rows_changed
    FROM columns
    GROUP BY destination_table, column_name
)

SELECT * FROM final ORDER BY destination_table DESC, rows_changed DESC, column_name
