-- No existing auth user changes id: a profile whose email has a login uses that login's id, and no new auth user reuses an existing id or email.
-- severity: blocking
SELECT p.id AS profile_id, a.id AS existing_auth_id, p.email, 'profile id differs from login id' AS problem
FROM profiles AS p
JOIN extract_auth_users AS a ON lower(trim(a.email)) = lower(trim(p.email))
WHERE p.id <> a.id AND NOT EXISTS (SELECT 1 FROM extract_auth_users AS x WHERE x.id = p.id)
UNION ALL
-- (two equality joins rather than one join on `id OR email`, which no engine can hash)
SELECT n.id, a.id, n.email, 'new auth user collides with an existing one'
FROM auth_users AS n
JOIN extract_auth_users AS a ON a.id = n.id
UNION
SELECT n.id, a.id, n.email, 'new auth user collides with an existing one'
FROM auth_users AS n
JOIN extract_auth_users AS a ON lower(trim(a.email)) = n.email
