-- Set for the transaction that runs page_with_counted_total.sql (see `fetch_counted`).
SELECT set_config('enable_seqscan', 'off', true) AS enable_seqscan,
       set_config('work_mem', '32MB', true) AS work_mem
