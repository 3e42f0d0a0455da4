-- The drift key of every row of a table, as (k, shown): `k` to compare (a JSON array of the key
-- values as text, NULL kept apart from 'NULL'), `shown` to print (`col=value, ...`).
-- A NULL table gives no rows. Identifiers are quoted by format(%I), values by format(%L).
CREATE OR REPLACE FUNCTION pg_temp.cleanmig_keys(rel regclass, cols text[])
RETURNS TABLE (k text, shown text) LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  IF rel IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT jsonb_build_array(%s)::text, concat_ws('', '', %s) FROM %s',
    (SELECT string_agg(format('%I::text', c), ', ' ORDER BY i)
       FROM unnest(cols) WITH ORDINALITY AS u(c, i)),
    (SELECT string_agg(format('%L || coalesce(%I::text, ''NULL'')', c || '=', c), ', ' ORDER BY i)
       FROM unnest(cols) WITH ORDINALITY AS u(c, i)),
    rel);
END
$fn$
