-- Rows the app added since extraction: keys of the live table $1 that were not extracted ($3)
-- and are not among the staged rows ($4, NULL when none). $2: the drift key columns.
-- Returns the total and the first five keys.
WITH live AS (SELECT * FROM pg_temp.cleanmig_keys($1::text::regclass, $2::text[])),
     extracted AS (SELECT * FROM pg_temp.cleanmig_keys($3::text::regclass, $2::text[])),
     staged AS (SELECT * FROM pg_temp.cleanmig_keys($4::text::regclass, $2::text[]))
SELECT count(*) OVER ()::int8, l.shown
FROM live l
WHERE NOT EXISTS (SELECT 1 FROM extracted e WHERE e.k = l.k)
  AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.k = l.k)
ORDER BY l.shown
LIMIT 5
