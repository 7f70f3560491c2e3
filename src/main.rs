fn main() -> std::process::ExitCode {
    infogan::cli::keep_freed_memory();
    infogan::cli::main()
}
