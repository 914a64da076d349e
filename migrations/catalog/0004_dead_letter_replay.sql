-- Dead letters can be replayed (`<service> replay-dead-letters`): each keeps the message key (for the idempotency
-- check of applied_events) and an audit of its replays. A letter is pending while replayed_at is NULL.
ALTER TABLE dead_letters
  ADD COLUMN IF NOT EXISTS event_key VARCHAR(255) NULL AFTER kafka_offset,
  ADD COLUMN IF NOT EXISTS replay_attempts INT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS last_replay_at DATETIME(3) NULL,
  ADD COLUMN IF NOT EXISTS replayed_at DATETIME(3) NULL,
  ADD COLUMN IF NOT EXISTS replay_result VARCHAR(255) NULL,
  ADD INDEX IF NOT EXISTS dead_letters_pending (consumer, replayed_at);
