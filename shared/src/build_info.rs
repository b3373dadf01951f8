//! What build is running: `--version`, the `build_info` gauge and the fields of the first log
//! line. The version is the workspace's, whichever crate reads it; tests/cli.rs checks that the
//! three report the same version and commit.

/// The workspace version (`[workspace.package] version` in the root Cargo.toml, which every crate
/// inherits and scripts/release.sh bumps).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from (short hash): build.rs takes `INGEST_GIT_SHA` from the
/// build's environment (the Docker build's argument), else asks git, else says "unknown".
pub const GIT_SHA: &str = env!("INGEST_GIT_SHA");

/// What `--version` prints after the binary's name: the version and the commit.
pub const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("INGEST_GIT_SHA"), ")");

/// Sets `build_info{version, git_sha}` to 1, so a dashboard can tell which build each instance
/// runs and when a rollout has finished.
pub fn record() {
    metrics::describe_gauge!(
        "build_info",
        "Always 1; the labels say which version and commit this binary was built from"
    );
    metrics::gauge!("build_info", "version" => VERSION, "git_sha" => GIT_SHA).set(1.0);
}
