-- Customers by evidence, and what happens to the existing profiles
WITH customer_rows AS (
    SELECT 'customers' AS population, evidence AS category, count(*) AS people
    FROM customers
    GROUP BY evidence
),

existing AS (
    SELECT
        'existing profiles' AS population,
        CASE
            WHEN c.profile_id IS NOT NULL THEN 'kept'
            WHEN s.id IS NOT NULL THEN 'keep_listed'
            ELSE 'deleted'
        END AS category
    FROM extract_unified_profiles AS p
    LEFT JOIN (SELECT DISTINCT profile_id FROM customers) AS c ON c.profile_id = p.id
    LEFT JOIN profiles AS s ON s.id = p.id
),

existing_rows AS (
    SELECT population, category, count(*) AS people FROM existing GROUP BY population, category
),

final AS (
    SELECT * FROM customer_rows
    UNION ALL
    SELECT * FROM existing_rows
)

SELECT * FROM final
ORDER BY population,
    CASE category
        WHEN 'tagged_and_paid' THEN 1 WHEN 'tag_only' THEN 2 WHEN 'payment_only' THEN 3
        WHEN 'kept' THEN 4 WHEN 'keep_listed' THEN 5 ELSE 6
    END
