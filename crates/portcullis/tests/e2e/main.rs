//! End-to-end tests: the real `portcullis` binary, real SQLite files and real PostgreSQL
//! clusters, the real CLI. One test binary, so the suite builds and links once.

mod auth_flows;
mod bad_input;
mod changes;
mod cli;
mod crash;
mod directory;
mod hardening;
mod harness;
mod leaks;
mod mail;
mod matrix;
mod people;
mod policies;
mod proxy;
mod replies;
mod requests;
mod resets;
mod schemathesis;
mod siem;
mod sso;
mod vault;
mod web;
