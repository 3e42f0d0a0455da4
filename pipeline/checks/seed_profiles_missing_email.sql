-- Seed validation pack (profiles): every profile has an email.
-- severity: blocking
SELECT id, email FROM profiles WHERE email IS NULL OR trim(email) = ''
