-- Empties `messages`, its ids and every aggregate, so each pass of the upkeep reference (and of
-- scripts/bench-upkeep.sh) starts from the same empty tables (the read model's invariant holds:
-- every count is 0). `message_ids` goes too: the same ids stored again would otherwise be
-- skipped as already stored.
TRUNCATE messages, message_ids, sender_stats, recipient_stats, message_hours, message_days;
UPDATE message_totals SET total_messages = 0, senders_count = 0, recipients_count = 0;
