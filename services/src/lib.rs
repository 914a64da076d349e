//! The users, catalog and orders REST services. Each owns one MySQL database and commits only there, in local
//! transactions; every cross-service effect travels as a change event captured from a service's binlog.
//!
//! The order workflow is choreography over the captured change topics (see `docs/services.md`):
//! - `orders` keeps a local copy of the users and products it needs ([`orders`]), fed from their change topics,
//!   and writes a new order as `PENDING` with its unit prices and its lines;
//! - `catalog` consumes the order's change event and, in one local transaction, either reserves the stock of every
//!   line or records a rejection ([`catalog`]); the reservation row is itself captured;
//! - `orders` consumes the reservation's change event and moves the order to `CONFIRMED` or `REJECTED`.
//!
//! Every consumer is idempotent ([`consumer`]): it applies events in batches, records the source position of each
//! event it applies in the same local transaction as the effects ([`apply`]) and commits its Kafka offsets only
//! afterwards. Transient database errors are retried until the database accepts; only events that cannot apply by
//! their content are parked in `dead_letters` ([`dead_letters`]), from where they can be replayed ([`replay`]).

pub mod apply;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod handler;
pub mod http;
pub mod metrics;
pub mod money;
pub mod operator;
pub mod orders;
pub mod progress;
pub mod replay;
pub mod rows;
pub mod users;

pub use cli::main;
pub use config::Service;
