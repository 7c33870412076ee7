//! Faults against the built binary, asserting what a user would see: one
//! module per kind of fault (`connections`: what one HTTP client can do to
//! the listeners).

#[path = "../common/mod.rs"]
mod common;

mod connections;
