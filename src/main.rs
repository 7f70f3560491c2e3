/// Large blocks start on a cache line, so that the GEMM can stream whole lines of a
/// large C past the caches (`kernels::LineAligned`).
#[global_allocator]
static ALLOCATOR: infogan::kernels::LineAligned = infogan::kernels::LineAligned;

fn main() -> std::process::ExitCode {
    infogan::cli::keep_freed_memory();
    infogan::cli::main()
}
