use std::path::PathBuf;
use std::process::Command;

fn main() {
    // sqlx::migrate! embeds ../migrations at compile time; rebuild when a migration is added or
    // edited.
    println!("cargo:rerun-if-changed=../migrations");
    git_sha();
}

/// `INGEST_GIT_SHA` for build_info: the short commit hash, or "unknown" outside a git checkout
/// or without git. Never a reason for the build to fail. The Docker build has no .git: there the
/// image's build argument of the same name, when given, names the commit.
fn git_sha() {
    println!("cargo:rerun-if-env-changed=INGEST_GIT_SHA");
    let given = std::env::var("INGEST_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty());
    let sha = given
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=INGEST_GIT_SHA={sha}");
    // Rebuilt when HEAD moves: a commit, a checkout, or a branch that is committed to.
    for path in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", path]));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
}

fn watch(path: Option<String>) {
    if let Some(path) = path.map(PathBuf::from).filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}
