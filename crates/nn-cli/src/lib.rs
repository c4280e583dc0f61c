#![doc = include_str!("../README.md")]
//!
//! ## The library
//!
//! The parts of the `nn` command that read what a user or a stranger wrote, as a library so
//! that fuzz targets and tests can drive them directly: the `--layers` mini-language and
//! model spec files ([`spec`]), and the training settings and checkpoint state
//! ([`settings`]); and the bodies of the fuzz targets ([`fuzzing`]).

pub mod fuzzing;
pub mod settings;
pub mod spec;
