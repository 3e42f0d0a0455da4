-- Profile emails are unique (compared lower-cased).
-- severity: blocking
SELECT lower(email) AS email, count(*) AS profiles FROM profiles GROUP BY lower(email) HAVING count(*) > 1
