//! The view service that maintains reporting.order_report in ClickHouse. Not built yet: see the README.
