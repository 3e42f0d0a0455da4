-- Seed validation pack (profiles): every profile has an auth user (existing or to be created).
-- severity: blocking
SELECT p.id, p.email
FROM profiles AS p
WHERE p.id NOT IN (SELECT id FROM extract_auth_users)
    AND p.id NOT IN (SELECT id FROM auth_users)
