-- The sender's message type (WhatsApp: text, image, audio, …). NULL when the sender gave none,
-- as plain /webhook senders do.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS msg_type text;
