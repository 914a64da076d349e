-- catalog: what expiry needs to know of the orders stream, reservations flagged for an operator, and the audit
-- trail of operator actions.

-- When the order became PENDING as the orders database tells it (the newer of its created_at and the commit time
-- of its PENDING event, ms since the epoch, the orders database's clock): a reservation expires only once the
-- orders stream is consumed past this plus the reservation TTL (see docs/services.md, "No unit sold twice").
ALTER TABLE known_orders ADD COLUMN pending_since_ms BIGINT NULL;

-- How far this service has applied a consumed topic, in the source's commit time: every change of the topic's
-- source committed before `covered_ms` (ms since the epoch) is applied here. Advanced by the source's heartbeats
-- once the consumer's committed offsets reach their watermarks.
CREATE TABLE IF NOT EXISTS known_progress (
  topic       VARCHAR(255) NOT NULL PRIMARY KEY,
  covered_ms  BIGINT NOT NULL,
  source_file VARCHAR(255) NOT NULL,
  source_pos  BIGINT UNSIGNED NOT NULL,
  updated_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- CONFIRMED orders whose reservation reconciliation could not restore (not enough stock, no lines known): an
-- operator decides (adjust stock, then reconciliation re-reserves; or cancel the order). Removed once repaired.
CREATE TABLE IF NOT EXISTS flagged_orders (
  order_id   BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  kind       VARCHAR(64) NOT NULL,
  detail     VARCHAR(512) NOT NULL,
  flagged_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Operator actions (release a reservation, adjust stock), each written in the transaction of the action.
CREATE TABLE IF NOT EXISTS operator_audit (
  id       BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  actor    VARCHAR(128) NOT NULL,
  reason   VARCHAR(512) NOT NULL,
  action   VARCHAR(64) NOT NULL,
  subject  VARCHAR(128) NOT NULL,
  before_state TEXT NULL,
  after_state  TEXT NULL,
  at       DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY operator_audit_subject (subject, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
