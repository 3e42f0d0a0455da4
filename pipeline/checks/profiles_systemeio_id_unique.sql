-- systemeio_id is unique among profiles (UNIQUE in unified_profiles).
-- severity: blocking
SELECT systemeio_id, count(*) AS profiles FROM profiles WHERE systemeio_id IS NOT NULL GROUP BY systemeio_id HAVING count(*) > 1
