//! The `spate` command line.

fn main() {}
