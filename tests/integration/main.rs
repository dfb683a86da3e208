//! Integration tests against real Postgres and Redis. One binary (one link step);
//! each test gets its own database, so they run in parallel.

mod accounts;
mod common;
mod devices;
mod edge;
mod files;
mod files_api;
mod idempotency;
mod jobs;
mod notifications;
mod ops_api;
mod pipeline;
mod projections;
mod purge;
mod scan;
mod store;
mod verify;
