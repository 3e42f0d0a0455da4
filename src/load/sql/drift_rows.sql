-- Rows the app added or removed since extraction, in one pass over the keys of the live table
-- $1, the extracted rows ($3) and the staged rows ($4, NULL when none). $2: the drift key
-- columns.
--   added:   live keys that were neither extracted nor staged;
--   removed: extracted keys the live table no longer has. For a reconciled table ($5) whose
--            staged rows carry the key, only keys the staged rows keep count: the others may
--            be gone because an earlier apply of this approval deleted them.
-- Returns, for each side with rows, its total and its first five keys.
WITH live AS MATERIALIZED (SELECT * FROM pg_temp.cleanmig_keys($1::text::regclass, $2::text[])),
     extracted AS MATERIALIZED (SELECT * FROM pg_temp.cleanmig_keys($3::text::regclass, $2::text[])),
     staged AS MATERIALIZED (SELECT * FROM pg_temp.cleanmig_keys($4::text::regclass, $2::text[])),
     added AS (
         SELECT l.shown FROM live l
         WHERE NOT EXISTS (SELECT 1 FROM extracted e WHERE e.k = l.k)
           AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.k = l.k)
     ),
     removed AS (
         SELECT e.shown FROM extracted e
         WHERE NOT EXISTS (SELECT 1 FROM live l WHERE l.k = e.k)
           AND (NOT $5::bool OR $4::text IS NULL OR EXISTS (SELECT 1 FROM staged s WHERE s.k = e.k))
     )
(SELECT 'added' AS side, count(*) OVER ()::int8, shown FROM added ORDER BY shown LIMIT 5)
UNION ALL
(SELECT 'removed' AS side, count(*) OVER ()::int8, shown FROM removed ORDER BY shown LIMIT 5)
