//! What build is running: the `build_info` gauge and the fields of the first log line.

/// The commit the binary was built from (short hash), or "unknown" when built outside a git
/// checkout, as in the Docker build (build.rs).
pub const GIT_SHA: &str = env!("INGEST_GIT_SHA");

/// Sets `build_info{version, git_sha}` to 1, so a dashboard can tell which build each instance
/// runs and when a rollout has finished.
pub fn record(version: &'static str) {
    metrics::describe_gauge!(
        "build_info",
        "Always 1; the labels say which version and commit this binary was built from"
    );
    metrics::gauge!("build_info", "version" => version, "git_sha" => GIT_SHA).set(1.0);
}
