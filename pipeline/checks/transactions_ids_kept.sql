-- An existing transaction of a kept Xendit payment keeps its id.
-- severity: blocking
SELECT c.id AS existing_id, s.id AS staged_id, s.payment_provider_id
FROM transactions AS s
JOIN extract_transactions AS c ON c.payment_provider_id = s.payment_provider_id
WHERE s.id <> c.id AND NOT EXISTS (SELECT 1 FROM transactions AS t WHERE t.id = c.id)
