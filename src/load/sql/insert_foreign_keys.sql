-- The foreign keys of table $1 when an INSERT into it may skip its triggers and have every key
-- checked once for the whole statement instead of once per row: one row per key (name, column,
-- parent (quoted), parent column, whether this transaction already holds a lock on the parent
-- that keeps its rows from being changed or deleted by others). No row when the inserts must
-- keep their triggers:
--   - the server is older than Postgres 13 (no pg_current_xact_id), the table is not a plain
--     table, or it has no foreign key;
--   - a trigger other than a foreign key's own check, or a rule, fires on its inserts;
--   - a key has several columns, is deferrable, references the table itself or a table that
--     is not a plain one, or its parent cannot be read and locked by the current role.
WITH t AS (SELECT $1::text::regclass AS oid),
keys AS (
  SELECT con.conname::text AS name,
         a.attname::text AS col,
         format('%I.%I', pn.nspname, pc.relname) AS parent,
         pa.attname::text AS parent_col,
         cardinality(con.conkey) = 1
           AND NOT con.condeferrable
           AND con.confrelid <> con.conrelid
           AND pc.relkind = 'r'
           AND has_column_privilege(con.confrelid, con.confkey[1], 'SELECT')
           AND has_any_column_privilege(con.confrelid, 'UPDATE') AS checkable,
         EXISTS (SELECT 1 FROM pg_locks l
                 WHERE l.locktype = 'relation'
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.relation = con.confrelid
                   AND l.pid = pg_backend_pid()
                   AND l.granted
                   AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                                  'AccessExclusiveLock')) AS parent_locked
  FROM pg_constraint con
  JOIN t ON con.conrelid = t.oid
  JOIN pg_class pc ON pc.oid = con.confrelid
  JOIN pg_namespace pn ON pn.oid = pc.relnamespace
  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
  JOIN pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = con.confkey[1]
  WHERE con.contype = 'f'
)
SELECT name, col, parent, parent_col, parent_locked
FROM keys
WHERE current_setting('server_version_num')::int >= 130000
  AND (SELECT bool_and(checkable) FROM keys)
  AND (SELECT c.relkind FROM pg_class c JOIN t ON c.oid = t.oid) = 'r'
  AND NOT EXISTS (SELECT 1 FROM pg_trigger tg JOIN t ON tg.tgrelid = t.oid
                  WHERE tg.tgenabled <> 'D'
                    AND tg.tgtype::int & 4 <> 0 -- fires on INSERT
                    AND NOT (tg.tgisinternal AND tg.tgfoid = '"RI_FKey_check_ins"'::regproc))
  AND NOT EXISTS (SELECT 1 FROM pg_rewrite r JOIN t ON r.ev_class = t.oid WHERE r.ev_type = '3')
ORDER BY name
