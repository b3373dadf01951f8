//! What build is running: `--version`, the `build_info` gauge and the fields of the first log
//! line, all from these constants, so they cannot disagree.

/// The workspace version (`[workspace.package] version` in the root Cargo.toml, which every crate
/// inherits and scripts/release.sh bumps).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from (short hash), or "unknown" when built outside a git
/// checkout, as in the Docker build (build.rs).
pub const GIT_SHA: &str = env!("INGEST_GIT_SHA");

/// What `--version` prints after the binary's name: the version and the commit.
pub const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("INGEST_GIT_SHA"), ")");

/// Sets `build_info{version, git_sha}` to 1, so a dashboard can tell which build each instance
/// runs and when a rollout has finished.
pub fn record(version: &'static str) {
    metrics::describe_gauge!(
        "build_info",
        "Always 1; the labels say which version and commit this binary was built from"
    );
    metrics::gauge!("build_info", "version" => version, "git_sha" => GIT_SHA).set(1.0);
}
