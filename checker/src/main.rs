//! `streamguard`: the command-line front of the stream checker (`streamguard check ...`).

fn main() -> std::process::ExitCode {
    streamguard_checker::cli::main()
}
