-- Whether the schema keeps every stored id in `message_ids` (the partitioned schema). No
-- parameters. One row, `present`.
SELECT to_regclass('message_ids') IS NOT NULL AS "present!"
