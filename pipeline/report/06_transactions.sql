-- Transactions by product: every kept paid payment of a known product
WITH final AS (
    SELECT
        product_type,
        count(*) AS transactions,
        count(user_id) AS linked_to_profile,
        count(*) - count(user_id) AS without_profile,
        sum(amount) AS amount_php
    FROM transactions
    GROUP BY product_type
)

SELECT * FROM final ORDER BY product_type
