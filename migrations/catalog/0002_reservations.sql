-- catalog: stock reservations of orders, the catalog's copy of order states, and the consumer's bookkeeping.

-- One reservation decision per order: RESERVED (stock taken), REJECTED (not enough stock; nothing taken),
-- RELEASED (stock given back: order cancelled, rejected or deleted), EXPIRED (given back: order still PENDING
-- after the reservation TTL). Captured: the orders service reacts to its changes.
CREATE TABLE IF NOT EXISTS reservations (
  order_id   BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  status     ENUM('RESERVED','REJECTED','RELEASED','EXPIRED') NOT NULL,
  reason     VARCHAR(512) NULL,
  expires_at DATETIME(3) NOT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  KEY reservations_status_expires (status, expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS reservation_lines (
  order_id   BIGINT UNSIGNED NOT NULL,
  product_id BIGINT UNSIGNED NOT NULL,
  quantity   INT UNSIGNED NOT NULL,
  PRIMARY KEY (order_id, product_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The newest state of each order as its change events told it (DELETED when the order row was deleted).
CREATE TABLE IF NOT EXISTS known_orders (
  id         BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  status     VARCHAR(16) NOT NULL,
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Idempotent consumption: the newest source position applied per topic and key, written in the same transaction
-- as the effect.
CREATE TABLE IF NOT EXISTS applied_events (
  consumer        VARCHAR(64) NOT NULL,
  topic           VARCHAR(255) NOT NULL,
  event_key       VARCHAR(255) NOT NULL,
  version         BIGINT UNSIGNED NOT NULL,
  source_file     VARCHAR(255) NOT NULL,
  source_pos      BIGINT UNSIGNED NOT NULL,
  source_row      BIGINT UNSIGNED NOT NULL,
  kafka_partition INT NOT NULL,
  kafka_offset    BIGINT NOT NULL,
  applied_at      DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (consumer, topic, event_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Events that could not be applied, with the reason.
CREATE TABLE IF NOT EXISTS dead_letters (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  consumer        VARCHAR(64) NOT NULL,
  topic           VARCHAR(255) NOT NULL,
  kafka_partition INT NOT NULL,
  kafka_offset    BIGINT NOT NULL,
  error           TEXT NOT NULL,
  payload         LONGTEXT NOT NULL,
  created_at      DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
