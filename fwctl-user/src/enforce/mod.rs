//! From a checked policy to what the kernel evaluates: [`compile`] turns it into
//! fixed-size tables, [`load`] is the one pipeline from a file to a compiled policy
//! (read, check, resolve, compile) that every consumer runs, and [`runtime`] keeps the
//! running policy (start-up, SIGHUP, file changes) and installs it through a
//! [`runtime::PolicyStore`], which `kernel` implements for the real maps.
//!
//! Pure apart from the store: no aya types, so all of it is tested without root.

pub mod compile;
pub mod load;
pub mod metrics;
pub mod runtime;
