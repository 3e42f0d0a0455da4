-- profiles: the complete clean contents of unified_profiles.
--
-- Rules:
--   * one profile per customer (see customers.sql); id = the existing auth.users id of the
--     email, else uuid_v5(email), so every existing customer keeps their login.
--   * names, phone, systemeio_id, tags from the kept systemeio contact; else the Xendit
--     customer name and phone; a phone no source has stays as the existing profile has it.
--   * tags: every tag of the email's contacts (as written), each once, sorted;
--     systemeio_tags: the kept contact's tag text.
--   * cohort_date: the day (default_timezone) of the first paid P2P payment, else of the
--     contact's creation.
--   * acquisition_source: 'systemeio' when tagged as paid, else 'xendit'; payment_source:
--     'xendit' when a paid P2P payment exists; api_source: 'systemeio' when a contact exists,
--     else 'xendit'.
--   * columns the app owns (tier, tier_assignment, tier_assignment_notes, last_active_at),
--     created_at and api_sync_version are carried over from the existing profile.
--   * keep-list: an existing profile that is not a customer but has tier 'admin' or an email
--     in pipeline/keep_emails.csv is carried over unchanged.
WITH source AS (
    SELECT * FROM customers
),

existing AS (
    SELECT p.*, lower(trim(p.email)) AS email_key
    FROM extract_unified_profiles AS p
),

tags AS (
    SELECT c.email, array_sort(array_distinct(flatten(array_agg(string_to_array(c.tags_text, ','))))) AS tags
    FROM contacts AS c
    WHERE c.outcome IN ('kept', 'merged') AND c.tags_text IS NOT NULL
    GROUP BY c.email
),

clean AS (
    SELECT
        s.profile_id AS id,
        s.email,
        s.first_name,
        s.last_name,
        coalesce(s.phone, e.phone) AS phone,
        t.tags,
        CASE WHEN s.is_paid_tagged THEN 'systemeio' ELSE 'xendit' END AS acquisition_source,
        CASE WHEN s.is_p2p_payer THEN 'xendit' END AS payment_source,
        CAST(
            coalesce(s.first_p2p_payment_utc, s.first_contact_created_utc) + cfg.default_utc_offset_interval
            AS DATE
        ) AS cohort_date,
        s.contact_id AS systemeio_id,
        s.contact_tags_text AS systemeio_tags,
        coalesce(
            e.created_at,
            least(s.first_contact_created_utc, s.first_p2p_created_utc, s.first_p2p_payment_utc),
            s.existing_auth_created_at,
            cfg.now_utc
        ) AS created_at,
        coalesce(
            greatest(s.last_contact_update_utc, s.last_p2p_update_utc),
            e.updated_at,
            cfg.now_utc
        ) AS updated_at,
        e.last_active_at,
        coalesce(e.tier, 'viewer') AS tier,
        coalesce(e.tier_assignment, 'auto') AS tier_assignment,
        e.tier_assignment_notes,
        CASE WHEN s.contact_source_row IS NOT NULL THEN 'systemeio' ELSE 'xendit' END AS api_source,
        cfg.now_utc AS last_api_sync_at,
        coalesce(e.api_sync_version, 1) AS api_sync_version
    FROM config AS cfg
    CROSS JOIN source AS s
    LEFT JOIN existing AS e ON e.id = s.existing_profile_id
    LEFT JOIN tags AS t ON t.email = s.email
),

kept_as_is AS (
    -- keep-list: staff and admins who are not customers stay exactly as they are
    SELECT
        e.id, e.email, e.first_name, e.last_name, e.phone, e.tags, e.acquisition_source,
        e.payment_source, e.cohort_date, e.systemeio_id, e.systemeio_tags, e.created_at,
        e.updated_at, e.last_active_at, e.tier, e.tier_assignment, e.tier_assignment_notes,
        e.api_source, e.last_api_sync_at, e.api_sync_version
    FROM existing AS e
    -- (NOT EXISTS rather than NOT IN: an anti join the engine can spill; a NULL key matches
    -- nothing, as with NOT IN)
    WHERE e.email_key IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM source AS s WHERE s.email = e.email_key)
        AND NOT EXISTS (SELECT 1 FROM source AS s WHERE s.profile_id = e.id)
        AND (
            lower(trim(e.tier)) = 'admin'
            OR e.email_key IN (SELECT lower(trim(email)) FROM keep_emails)
        )
),

final AS (
    SELECT * FROM clean
    UNION ALL
    SELECT * FROM kept_as_is
)

SELECT * FROM final
