//! The `labbook` binary: a thin command-line layer over the library.
mod cli;
mod tui;

fn main() -> std::process::ExitCode {
    cli::main()
}
