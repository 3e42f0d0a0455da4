-- Seed validation pack (profiles): every profile has an auth user (existing or to be created).
-- severity: blocking
SELECT p.id, p.email
FROM profiles AS p
WHERE NOT EXISTS (SELECT 1 FROM extract_auth_users AS a WHERE a.id = p.id)
    AND NOT EXISTS (SELECT 1 FROM auth_users AS n WHERE n.id = p.id)
