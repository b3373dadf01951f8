//! Access over HTTP (the contract's "Access"): `ADMIN_TOKENS` for /admin (absent while unset),
//! `READ_TOKENS` for the read API, each set of tokens opening only its own door, several tokens
//! at once for rotation, and health and metrics always open.

use std::time::Duration;

use integration_tests::{Running, TestEnv};
use serde_json::Value;

const ADMIN_PATHS: [&str; 2] = ["/admin/dead-letters", "/admin/dead-letters/1"];

/// Status and JSON body of a GET with an optional bearer token.
async fn get(env: &TestEnv, gateway: &Running, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = env.http.get(gateway.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn started(env: &TestEnv, overrides: &[(&str, &str)]) -> Running {
    let gateway = env.start_gateway(env.gateway_config(overrides)).await;
    gateway.wait_ready(&env.http, Duration::from_secs(30)).await;
    gateway
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_absent_while_admin_tokens_is_unset() {
    let env = TestEnv::new().await;
    let gateway = started(&env, &[]).await;
    for path in ADMIN_PATHS {
        for token in [None, Some("anything")] {
            let (status, body) = get(&env, &gateway, path, token).await;
            assert_eq!(status, 404, "{path} {token:?}: {body}");
            assert_eq!(body["detail"], "Not Found");
        }
    }
    let redrive = env
        .http
        .post(gateway.url("/admin/dead-letters/redrive"))
        .send()
        .await
        .unwrap();
    assert_eq!(redrive.status(), 404);
    // The read API stays open as it always was.
    assert_eq!(get(&env, &gateway, "/messages", None).await.0, 200);
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_set_opens_its_own_door_and_rotation_works() {
    let env = TestEnv::new().await;
    let gateway = started(
        &env,
        &[
            ("ADMIN_TOKENS", "admin-old, admin-new"),
            ("READ_TOKENS", "read-old,read-new"),
        ],
    )
    .await;

    // /admin: no token and a wrong one are 401 JSON; either admin token is let in.
    for path in ADMIN_PATHS {
        for token in [None, Some("wrong"), Some("read-old"), Some("read-new")] {
            let (status, body) = get(&env, &gateway, path, token).await;
            assert_eq!(status, 401, "{path} {token:?}: {body}");
            assert_eq!(body["detail"], "not authenticated");
        }
    }
    for token in ["admin-old", "admin-new"] {
        let (status, body) = get(&env, &gateway, "/admin/dead-letters", Some(token)).await;
        assert_eq!(status, 200, "{token}: {body}");
        // Past the gate, an unknown id is the route's own 404.
        let (status, _) = get(&env, &gateway, "/admin/dead-letters/1", Some(token)).await;
        assert_eq!(status, 404, "{token}");
    }

    // The read API: its own tokens only.
    for path in ["/messages", "/stats", "/openapi.json"] {
        for token in [None, Some("wrong"), Some("admin-old"), Some("admin-new")] {
            let (status, body) = get(&env, &gateway, path, token).await;
            assert_eq!(status, 401, "{path} {token:?}: {body}");
            assert_eq!(body["detail"], "not authenticated");
        }
        for token in ["read-old", "read-new"] {
            assert_eq!(
                get(&env, &gateway, path, Some(token)).await.0,
                200,
                "{path}"
            );
        }
    }

    // Health and metrics never ask for a token.
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let response = env.http.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    gateway.stop().await.unwrap();
}
