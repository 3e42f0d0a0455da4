-- Rows the app removed since extraction: extracted keys ($3) that the live table $1 no longer
-- has. For a reconciled table ($5) whose staged rows carry the key ($4), only keys the staged
-- rows keep count: the others may be gone because an earlier apply of this approval deleted
-- them. $2: the drift key columns. Returns the total and the first five keys.
WITH live AS (SELECT * FROM pg_temp.cleanmig_keys($1::text::regclass, $2::text[])),
     extracted AS (SELECT * FROM pg_temp.cleanmig_keys($3::text::regclass, $2::text[])),
     staged AS (SELECT * FROM pg_temp.cleanmig_keys($4::text::regclass, $2::text[]))
SELECT count(*) OVER ()::int8, e.shown
FROM extracted e
WHERE NOT EXISTS (SELECT 1 FROM live l WHERE l.k = e.k)
  AND (NOT $5::bool OR $4::text IS NULL OR EXISTS (SELECT 1 FROM staged s WHERE s.k = e.k))
ORDER BY e.shown
LIMIT 5
