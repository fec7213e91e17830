//! Test fixtures for labbook, kept out of the shipped library: a fake of the GitHub REST API
//! served over real HTTP on 127.0.0.1 ([`fake`]), used by the tests and by
//! `cargo run --example fake-github`, and the notebook side that talks to it ([`notebook`]).
pub mod fake;
pub mod notebook;
