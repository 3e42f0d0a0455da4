-- Students tagged as paid with no Xendit payment (enrolled without a transaction)
SELECT p.email, p.first_name, p.last_name, e.id AS enrollment_id, p.systemeio_tags
FROM customers AS c
JOIN profiles AS p ON p.id = c.profile_id
LEFT JOIN enrollments AS e ON e.user_id = p.id
WHERE c.evidence = 'tag_only'
ORDER BY p.email
