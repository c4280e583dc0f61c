//! The parts of the `nn` command that read text a user or a stranger wrote, as a library so
//! that fuzz targets and tests can drive them directly: the `--layers` mini-language and
//! model spec files ([`spec`]).

pub mod spec;
