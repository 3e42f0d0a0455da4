-- Profile emails of customers are trimmed, lower-case and look like local@domain.tld (keep-listed profiles are carried as they are).
-- severity: blocking
SELECT p.id, p.email
FROM config AS cfg
CROSS JOIN profiles AS p
JOIN customers AS c ON c.profile_id = p.id
WHERE p.email <> lower(trim(p.email)) OR NOT regexp_like(p.email, cfg.email_pattern)
