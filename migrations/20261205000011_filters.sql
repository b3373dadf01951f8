-- The filters of the read API, each written once: `GET /messages` (its page, its counted total,
-- the planner's estimate of that total, and the export) selects from messages_matching, and the
-- dead-letter endpoints (a page, how many remain, a bulk delete) filter with dead_letter_matches.
-- A filter added to the API is added here, in a new migration that replaces the function.
--
-- Both are plain SQL, STABLE, and neither STRICT nor SECURITY DEFINER nor carrying a SET clause:
-- that is what lets Postgres inline them into the calling statement, where they plan exactly as
-- the WHERE clause they replace. The read pool plans every execution with the actual values
-- (plan_cache_mode = force_custom_plan), so a NULL argument (a filter not given) folds away and
-- each combination gets its own plan and index: (ts, message_id) for a time range, the sender's
-- or recipient's index, the trigram index for a search. A function that stopped being inlined
-- would still return the right rows, only through a scan of every partition.

-- The messages matching the filters of `GET /messages`; NULL: that filter is not given.
--   pattern  an ILIKE pattern (the caller escapes q and wraps it in %)
--   since    ts >= since;  until  ts < until
CREATE FUNCTION messages_matching(
    sender text, recipient text, since timestamptz, until timestamptz, pattern text
)
RETURNS SETOF messages
LANGUAGE sql STABLE AS $$
    SELECT * FROM messages m
    WHERE (sender IS NULL OR m.from_msisdn = sender)
      AND (recipient IS NULL OR m.to_msisdn = recipient)
      AND (since IS NULL OR m.ts >= since)
      AND (until IS NULL OR m.ts < until)
      AND (pattern IS NULL OR m.text ILIKE pattern)
$$;

-- Whether a dead letter matches the filters of `/admin/dead-letters`; NULL: not given.
--   pattern  an ILIKE pattern on the reason (escaped, wrapped in %)
--   since    last_seen >= since;  until  last_seen < until
-- A predicate rather than a set: the bulk delete filters `dead_letters` itself.
CREATE FUNCTION dead_letter_matches(
    d dead_letters, pattern text, since timestamptz, until timestamptz
)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT (pattern IS NULL OR d.reason ILIKE pattern)
       AND (since IS NULL OR d.last_seen >= since)
       AND (until IS NULL OR d.last_seen < until)
$$;
