//! Build script: records the commit the binary is built from (`CROSSROOM_COMMIT`, shown by
//! `crossroom_build_info` and `--version`). An explicit `CROSSROOM_COMMIT` in the environment
//! wins (builds from a tarball); without git the commit is `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CROSSROOM_COMMIT");
    // Rebuild when HEAD moves: the file itself, and the branch it points at. Only files that
    // exist: cargo reruns the script on every build for a path that does not.
    let mut watch = vec![".git/HEAD".to_owned(), ".git/packed-refs".to_owned()];
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(branch) = head.trim().strip_prefix("ref: ") {
            watch.push(format!(".git/{branch}"));
        }
    }
    for path in watch.iter().filter(|p| std::path::Path::new(p).is_file()) {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = std::env::var("CROSSROOM_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !s.trim().is_empty()).then(|| s.trim().to_owned())
    });
    println!(
        "cargo:rustc-env=CROSSROOM_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
