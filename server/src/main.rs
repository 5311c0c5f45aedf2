use std::ffi::OsString;
use std::path::PathBuf;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Minimal glue for `mitzod sandbox-exec --policy FILE -- CMD...`; the
    // real CLI replaces this.
    if args.first().is_some_and(|a| a == "sandbox-exec") {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        let code = match args.get(1..4) {
            Some([flag, file, dashes]) if flag == "--policy" && dashes == "--" => {
                mitzod::sandbox::cli::sandbox_exec(&PathBuf::from(file), &args[4..])
            }
            _ => {
                eprintln!("usage: mitzod sandbox-exec --policy FILE -- CMD [ARGS...]");
                2
            }
        };
        std::process::exit(code);
    }
}
