-- Seed validation pack (enrollments): enrollments without a transaction (students tagged as paid with no Xendit payment).
-- severity: warning
SELECT e.id, e.user_id, p.email FROM enrollments AS e LEFT JOIN profiles AS p ON p.id = e.user_id WHERE e.transaction_id IS NULL
