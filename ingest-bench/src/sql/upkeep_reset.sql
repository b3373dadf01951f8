-- Empties `messages` and every aggregate, so each pass of the upkeep reference starts from the
-- same empty tables (the read model's invariant holds: every count is 0).
TRUNCATE messages, sender_stats, recipient_stats, message_hours, message_days;
UPDATE message_totals SET total_messages = 0, senders_count = 0, recipients_count = 0;
