//! Chronicle: an event-sourced file backend.
//!
//! Data flow: `api` → `commands` → `aggregates` → `store` (events) → `projections`
//! (read tables). See docs/architecture.md.

pub mod aggregates;
pub mod api;
pub mod app;
pub mod audit_tools;
pub mod auth;
pub mod bench;
pub mod breaker;
pub mod cache;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod console;
pub mod db;
pub mod error;
pub mod feed;
pub mod ids;
pub mod live;
pub mod media;
pub mod metrics;
pub mod privacy;
pub mod projections;
pub mod queries;
pub mod queue;
pub mod ratelimit;
pub mod replicas;
pub mod scan;
pub mod state;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod transparency;
pub mod uploads;
pub mod webhooks;
pub mod worker;
