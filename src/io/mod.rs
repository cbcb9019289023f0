//! The thin I/O layer over glommio: direct (O_DIRECT) files and the iopoll probe.
