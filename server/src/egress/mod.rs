//! Egress by name: mitzod's allow-listing proxy, the only way out of an
//! agent's network namespace (see [`crate::sandbox::netns`]).

pub mod proxy;
