-- Xendit rows with the person's email (or the External ID asked for): outcome, reason, and the transaction a kept row became
WITH source AS (
    SELECT
        x._source_row AS source_row,
        trim(x.external_id) AS external_id,
        x.status,
        x.description,
        CAST(x.amount AS VARCHAR) AS amount,
        CAST(x.created AS VARCHAR) AS created,
        lower(trim(coalesce(nullif(trim(x.customer_email), ''), x.email))) AS email
    FROM extract_xendit AS x
),

matched AS (
    SELECT s.*
    FROM person AS p
    JOIN source AS s ON s.email = p.email OR s.external_id = p.external_id
),

final AS (
    SELECT
        m.source_row,
        m.external_id,
        m.email,
        m.status,
        m.description,
        m.amount,
        m.created,
        coalesce(r.outcome, 'kept') AS outcome,
        r.reason,
        CASE WHEN r.outcome IS NULL THEN t.id END AS transaction_id
    FROM matched AS m
    LEFT JOIN stage_rejects AS r ON r.source_table = 'xendit' AND r._source_row = m.source_row
    LEFT JOIN stage_transactions AS t ON t.payment_provider_id = m.external_id
)

SELECT * FROM final ORDER BY source_row
