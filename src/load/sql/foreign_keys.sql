-- Every foreign key that references one of the tables in $1 (`schema.table` names), from any
-- table outside the runs' backup schemas: name, child (quoted), child (as written), parent (as
-- written), child columns, parent columns, child primary key, ON DELETE CASCADE.
SELECT con.conname::text,
       format('%I.%I', cn.nspname, cc.relname),
       cn.nspname || '.' || cc.relname,
       pn.nspname || '.' || pc.relname,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i),
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i),
       ARRAY(SELECT a.attname::text FROM pg_index ix JOIN pg_attribute a
             ON a.attrelid = ix.indrelid AND a.attnum = ANY (ix.indkey)
             WHERE ix.indrelid = con.conrelid AND ix.indisprimary ORDER BY a.attnum),
       con.confdeltype = 'c'
FROM pg_constraint con
JOIN pg_class pc ON pc.oid = con.confrelid
JOIN pg_namespace pn ON pn.oid = pc.relnamespace
JOIN pg_class cc ON cc.oid = con.conrelid
JOIN pg_namespace cn ON cn.oid = cc.relnamespace
WHERE con.contype = 'f'
  AND pn.nspname || '.' || pc.relname = ANY ($1::text[])
  AND cn.nspname NOT LIKE 'cleanmig_backup_%'
ORDER BY 3, 1
