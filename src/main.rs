//! Thin entry point: parse the command line and hand over to the library.

/// jemalloc instead of glibc's malloc: measured in docs/benchmarks.md ("The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    chronicle::cli::main()
}
