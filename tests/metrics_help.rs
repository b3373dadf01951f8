//! Every metric a binary exports says what it is: a `# TYPE` line without its `# HELP` fails,
//! for the gateway and for the worker, as each serves `/metrics` right after start-up.

use std::time::Duration;

use integration_tests::procs::{ServiceProcess, TempDir, free_port};
use integration_tests::{TestEnv, scrape_metrics_at};

/// The names of the `# TYPE` lines of a Prometheus text that have no `# HELP` line.
fn without_help(text: &str) -> Vec<String> {
    let named = |prefix: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|rest| rest.split(' ').next())
            .map(str::to_owned)
            .collect()
    };
    let helped = named("# HELP ");
    named("# TYPE ")
        .into_iter()
        .filter(|name| !helped.contains(name))
        .collect()
}

#[test]
fn the_reader_finds_a_type_without_help() {
    let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n\
                # TYPE b_total counter\nb_total 0\n";
    assert_eq!(without_help(text), ["b_total"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_both_binaries_has_help() {
    let env = TestEnv::new().await;
    let logs = TempDir::new("metrics-help");
    let mut vars = env.vars();
    // A WhatsApp secret too, so that its signature key-slot series exists from start-up.
    vars.insert("WHATSAPP_APP_SECRET".into(), "whatsapp-test-secret".into());
    let gateway = ServiceProcess::spawn(
        "ingest-gateway",
        "gateway",
        &vars,
        "GATEWAY_ADDR",
        free_port(),
        logs.path(),
    );
    let worker = ServiceProcess::spawn(
        "ingest-worker",
        "worker",
        &vars,
        "WORKER_ADDR",
        free_port(),
        logs.path(),
    );
    for service in [&gateway, &worker] {
        service.wait_ready(&env.http, Duration::from_secs(60)).await;
        let text = scrape_metrics_at(&env.http, service.url("/metrics")).await;
        assert!(
            text.contains("# TYPE "),
            "{}: no metrics in\n{text}",
            service.name
        );
        assert_eq!(
            without_help(&text),
            Vec::<String>::new(),
            "{}: metrics without # HELP",
            service.name
        );
    }
}
