-- Seed validation pack (profiles): profiles with neither first nor last name.
-- severity: warning
SELECT id, email FROM profiles WHERE first_name IS NULL AND last_name IS NULL
