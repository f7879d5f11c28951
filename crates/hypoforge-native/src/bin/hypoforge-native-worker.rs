//! A native-plugin worker on its own: what `hypoforge native-worker` runs, for programs other
//! than the CLI (tests, benchmarks) that start workers.

fn main() -> std::process::ExitCode {
    hypoforge_native::worker::main()
}
