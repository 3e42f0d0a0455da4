-- No paying customer is missing: every kept paid P2P payer and every contact tagged as paid has a profile, and so has every existing profile with a kept payment.
-- severity: blocking
SELECT 'paid P2P payer' AS who, p.email
FROM payments AS p
WHERE p.outcome = 'kept' AND p.product = 'p2p'
    AND NOT EXISTS (SELECT 1 FROM profiles AS f WHERE f.email = p.email)
UNION ALL
SELECT 'contact tagged as paid', c.email
FROM contacts AS c
WHERE c.outcome = 'kept' AND c.is_paid_tagged
    AND NOT EXISTS (SELECT 1 FROM profiles AS f WHERE f.email = c.email)
UNION ALL
SELECT 'existing profile with a kept P2P payment', e.email
FROM extract_unified_profiles AS e
JOIN payments AS p ON p.email = lower(trim(e.email)) AND p.outcome = 'kept' AND p.product = 'p2p'
WHERE NOT EXISTS (SELECT 1 FROM profiles AS f WHERE f.id = e.id)
