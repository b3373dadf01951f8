-- A third kind of dead letter (issue #29): 'max_deliveries', a message JetStream delivered
-- MAX_DELIVER times without any worker acknowledging it (a payload that crashes or hangs every
-- worker that takes it). The worker moves it here and deletes it from the stream, so the stream's
-- first sequence, which every consistent read waits on, moves past it
-- (ingest-worker/src/max_deliveries.rs). Like the other kinds it keeps the raw bytes and can be
-- redriven once the cause is fixed.
ALTER TABLE dead_letters DROP CONSTRAINT IF EXISTS dead_letters_kind_check;
ALTER TABLE dead_letters
    ADD CONSTRAINT dead_letters_kind_check CHECK (kind IN ('invalid', 'refused', 'max_deliveries'));
