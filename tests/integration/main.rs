//! Integration tests against real Postgres and Redis. One binary (one link step);
//! each test gets its own database, so they run in parallel.

mod accounts;
mod audit_api;
mod audit_verify;
mod bench_upload;
mod common;
mod devices;
mod edge;
mod files;
mod files_api;
mod history;
mod idempotency;
mod jobs;
mod notifications;
mod ops_api;
mod out_of_process;
mod pipeline;
mod process;
mod projections;
mod purge;
mod s3;
mod scan;
mod store;
mod verify;
