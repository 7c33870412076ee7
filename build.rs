//! Records the git revision and the build date for `--version` and the
//! build_info metric, as `SCE_GIT_REVISION` and `SCE_BUILD_DATE`.
//!
//! The revision is `git rev-parse --short=12 HEAD`, or `SCE_GIT_REVISION` from
//! the environment when set (a build from a copy without `.git`, e.g. a
//! container build), or the commit cargo recorded in `.cargo_vcs_info.json` (a
//! crate tarball), else "unknown". The date is `SOURCE_DATE_EPOCH` when set
//! (reproducible builds), else today, in UTC.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/build_date.rs"]
mod build_date;

fn main() {
    println!("cargo:rerun-if-env-changed=SCE_GIT_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // The date is taken when this script runs, so run it again whenever the
    // crate itself is rebuilt.
    for path in ["build.rs", "src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }

    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let revision = match std::env::var("SCE_GIT_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_owned(),
        _ => git_revision(&manifest_dir)
            .or_else(|| vcs_info_revision(&manifest_dir))
            .unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=SCE_GIT_REVISION={revision}");

    let seconds = match std::env::var("SOURCE_DATE_EPOCH") {
        // Set but empty (e.g. a container build argument left out) means unset.
        Ok(s) if !s.trim().is_empty() => match s.trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("error: SOURCE_DATE_EPOCH={s:?} is not a number of seconds");
                std::process::exit(1);
            }
        },
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    println!(
        "cargo:rustc-env=SCE_BUILD_DATE={}",
        build_date::utc_date(seconds)
    );
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// HEAD's short hash, when the crate is a tracked part of a git checkout (a
/// crate unpacked inside some unrelated repository is not). Also tells cargo to
/// look again when HEAD moves: in a worktree `.git` is a file, HEAD lives in the
/// worktree's git dir and branches in the common one, so both are asked of git.
fn git_revision(dir: &Path) -> Option<String> {
    git(dir, &["ls-files", "--error-unmatch", "Cargo.toml"])?;
    let absolute = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { dir.join(p) }
    };
    let git_dir = absolute(git(dir, &["rev-parse", "--git-dir"])?);
    let common_dir = absolute(git(dir, &["rev-parse", "--git-common-dir"])?);
    // HEAD's reflog changes on every commit, checkout and reset in this
    // worktree, also when the branch was packed and has no file of its own yet.
    let mut watch = vec![
        git_dir.join("HEAD"),
        git_dir.join("logs/HEAD"),
        common_dir.join("packed-refs"),
    ];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(common_dir.join(branch));
    }
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    git(dir, &["rev-parse", "--short=12", "HEAD"])
}

/// The commit `cargo package` recorded, in a crate tarball.
fn vcs_info_revision(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    let after = text.split("\"sha1\"").nth(1)?;
    let hash: String = after
        .trim_start_matches([' ', ':', '"', '\t', '\n'])
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    (hash.len() == 12).then_some(hash)
}
