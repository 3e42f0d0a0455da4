-- Paid payments and pesos per month (default_timezone) by product: staged against the current transactions
WITH staged AS (
    SELECT 'staged' AS version, product_type, amount, coalesce(paid_at, settled_at, created_at) AS paid_utc
    FROM transactions
),

current AS (
    SELECT 'current' AS version, product_type, amount, coalesce(paid_at, settled_at, created_at) AS paid_utc
    FROM extract_transactions
),

renamed AS (
    SELECT
        s.version,
        CASE s.product_type WHEN 'course' THEN 'P2P' WHEN 'ebook' THEN 'Canva' ELSE 'other' END AS product,
        s.amount,
        to_char(CAST(s.paid_utc AS TIMESTAMP) + cfg.default_utc_offset_interval, '%Y-%m') AS month
    FROM config AS cfg
    CROSS JOIN (SELECT * FROM staged UNION ALL SELECT * FROM current) AS s
),

final AS (
    SELECT month, product, version, count(*) AS payments, sum(amount) AS amount_php
    FROM renamed
    WHERE month IS NOT NULL
    GROUP BY month, product, version
)

SELECT * FROM final ORDER BY month, product, version
