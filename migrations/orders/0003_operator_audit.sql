-- orders: the audit trail of operator actions (force-cancel), each written in the transaction of the action.
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
