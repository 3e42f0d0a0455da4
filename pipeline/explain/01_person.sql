-- The person: the email asked for, else the payer of the payment asked for (--key), normalised as the pipeline does
WITH payment_email AS (
    SELECT lower(trim(coalesce(nullif(trim(x.customer_email), ''), x.email))) AS email
    FROM subject AS s
    JOIN extract_xendit AS x ON trim(x.external_id) = s.external_id
),

final AS (
    SELECT
        coalesce((SELECT lower(trim(email)) FROM subject), (SELECT min(email) FROM payment_email)) AS email,
        (SELECT external_id FROM subject) AS external_id
)

SELECT * FROM final
