-- New auth users are written like Supabase writes them (instance_id, aud/role, '' tokens and password, email_confirmed_at, phone NULL), each with one email identity.
-- severity: blocking
SELECT u.id, u.email
FROM auth_users AS u
WHERE u.instance_id <> '00000000-0000-0000-0000-000000000000'
    OR u.aud <> 'authenticated' OR u.role <> 'authenticated'
    OR coalesce(u.confirmation_token, '-') <> '' OR coalesce(u.recovery_token, '-') <> ''
    OR coalesce(u.email_change_token_new, '-') <> '' OR coalesce(u.email_change, '-') <> ''
    OR coalesce(u.encrypted_password, '-') <> ''
    OR u.email_confirmed_at IS NULL OR u.created_at IS NULL OR u.updated_at IS NULL
    OR u.phone IS NOT NULL
    OR u.email <> lower(trim(u.email))
    OR (SELECT count(*) FROM auth_identities AS i WHERE i.user_id = u.id AND i.provider = 'email') <> 1
