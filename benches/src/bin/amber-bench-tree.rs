//! `amber-bench-tree DIR`: writes the benches' generated source tree (about 100 MiB, see
//! [`amber_benches::TreeSpec::DEFAULT`]) into `DIR` and prints its file count and bytes.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: amber-bench-tree DIR");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    match amber_benches::generate_tree(&dir, &amber_benches::TreeSpec::DEFAULT) {
        Ok(stats) => {
            println!("{} files, {} bytes", stats.files, stats.bytes);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write the tree into {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
