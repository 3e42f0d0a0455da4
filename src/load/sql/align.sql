-- Schema alignment: the plan's transactions columns that production lacks.
-- Each is added only if absent; on a second run this changes nothing.
ALTER TABLE public.transactions
  ADD COLUMN IF NOT EXISTS api_source       text        DEFAULT 'xendit',
  ADD COLUMN IF NOT EXISTS last_api_sync_at timestamptz,
  ADD COLUMN IF NOT EXISTS api_sync_version integer     DEFAULT 1,
  ADD COLUMN IF NOT EXISTS processed_at     timestamptz DEFAULT now(),
  ADD COLUMN IF NOT EXISTS fiscal_year      integer,
  ADD COLUMN IF NOT EXISTS fiscal_quarter   integer;
