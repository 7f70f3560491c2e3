fn main() -> std::process::ExitCode {
    infogan::cli::main()
}
