-- orders: the workflow's state. Orders carry their lines so that one change event holds everything the catalog
-- needs to reserve stock for them.
ALTER TABLE orders ADD COLUMN items JSON NULL;

-- Every status an order went through, with the change event that caused it (NULL for the API and timeouts).
CREATE TABLE IF NOT EXISTS order_history (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  order_id    BIGINT UNSIGNED NOT NULL,
  status      VARCHAR(16) NOT NULL,
  reason      VARCHAR(512) NULL,
  cause       VARCHAR(16) NOT NULL,
  event_topic VARCHAR(255) NULL,
  event_file  VARCHAR(255) NULL,
  event_pos   BIGINT UNSIGNED NULL,
  event_row   BIGINT UNSIGNED NULL,
  at          DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY order_history_order (order_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Local copies fed from the users and products change topics: what an order may refer to, and its prices.
CREATE TABLE IF NOT EXISTS known_users (
  id      BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  deleted TINYINT(1) NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS known_products (
  id      BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  name    VARCHAR(255) NOT NULL,
  price   DECIMAL(12,2) NOT NULL,
  deleted TINYINT(1) NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The newest reservation state per order, from the catalog's reservations topic.
CREATE TABLE IF NOT EXISTS known_reservations (
  order_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  status   VARCHAR(16) NOT NULL,
  reason   VARCHAR(512) NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

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
