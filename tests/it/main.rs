//! The one integration-test binary: SQL rule tests and end-to-end tests against a real Postgres
//! that the harness starts itself (see `support`).

mod supabase;
mod support;

mod approve;
mod catalog;
mod demo_data;
mod devdb;
mod extract;
mod fingerprint;
mod insert_checks;
mod live_app;
mod load;
mod load_fixture;
mod pooler;
mod readers;
mod review;
mod tls;
mod transform;
mod values;
