-- One transaction per Xendit payment (payment_provider_id).
-- severity: blocking
SELECT payment_provider_id, count(*) AS transactions FROM transactions GROUP BY payment_provider_id HAVING count(*) > 1
