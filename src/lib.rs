//! `wsm` as a library: the script engine and its command families (`engine`), the host
//! primitives registered into it (`host`), the interactive shell (`repl`) and the shells'
//! completion that asks wsm (`completion`). The binary
//! (`main.rs`) parses the command line and hands over; the fuzz targets call the parsers here.

pub mod completion;
pub mod engine;
pub mod host;
pub mod repl;
