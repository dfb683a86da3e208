//! Thin entry point: parse the command line and hand over to the library.

/// jemalloc instead of glibc's malloc: measured in docs/benchmarks.md ("Small files: CPU per
/// upload, and what every request copied").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    chronicle::cli::main()
}
