-- Days from registration (first systemeio contact) to the first paid P2P payment, per customer with both
WITH source AS (
    SELECT
        CAST(date_part('epoch', first_p2p_payment_utc) - date_part('epoch', first_contact_created_utc) AS DOUBLE) / 86400.0 AS delay_days
    FROM customers
    WHERE first_p2p_payment_utc IS NOT NULL AND first_contact_created_utc IS NOT NULL
),

bucketed AS (
    SELECT
        CASE
            WHEN delay_days < 0 THEN 1
            WHEN delay_days < 1 THEN 2
            WHEN delay_days < 7 THEN 3
            WHEN delay_days < 30 THEN 4
            WHEN delay_days < 90 THEN 5
            WHEN delay_days < 365 THEN 6
            ELSE 7
        END AS bucket
    FROM source
),

labels AS (
    SELECT * FROM (VALUES
        (1, 'paid before registering'), (2, 'same day'), (3, '1-6 days'), (4, '7-29 days'),
        (5, '30-89 days'), (6, '90-364 days'), (7, '365 days or more')
    ) AS t(bucket, delay)
),

final AS (
    SELECT l.bucket, l.delay, count(b.bucket) AS customers
    FROM labels AS l
    LEFT JOIN bucketed AS b ON b.bucket = l.bucket
    GROUP BY l.bucket, l.delay
)

SELECT delay, customers FROM final ORDER BY bucket
