//! The shared test kit (server/testkit), under the name these tests use.
#![allow(unused_imports)]

pub use mitzo_testkit::*;
