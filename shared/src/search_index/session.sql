-- Settings of the session that brings the search index in line (search_index/mod.rs). No
-- parameters. A build may take minutes to hours on a large table: no statement or lock timeout
-- set through DATABASE_URL may cut it short (that would leave an invalid index behind).
SELECT set_config('statement_timeout', '0', false) AS statement_timeout,
       set_config('lock_timeout', '0', false) AS lock_timeout
