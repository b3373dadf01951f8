//! A headless Chromium driven over WebDriver (chromedriver) for tests/browser.rs. Needs Debian's
//! `chromium` and `chromium-driver` (scripts/test.sh installs them).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::eventually;

/// Generous for a loaded 2-core machine; every wait polls and returns as soon as it holds.
const WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            // SAFETY: a plain kill(2) of the process group this Browser started.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
    }
}

impl Browser {
    pub async fn start(http: &reqwest::Client) -> Self {
        Self::start_with(http, None).await
    }

    /// A browser that saves downloads in `dir` without asking.
    pub async fn downloading_to(http: &reqwest::Client, dir: &Path) -> Self {
        Self::start_with(http, Some(dir)).await
    }

    async fn start_with(http: &reqwest::Client, downloads: Option<&Path>) -> Self {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver missing: apt-get install chromium chromium-driver (scripts/test.sh does)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which the Chromium it starts joins: dropping the Browser
            // ends both, also when a test panics before closing its session.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        eventually(WAIT, "chromedriver answers", || async {
            let r = http.get(format!("{url}/status")).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        let mut options = json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1100"],
        });
        if let Some(dir) = downloads {
            options["prefs"] = json!({
                "download.default_directory": dir,
                "download.prompt_for_download": false,
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("WebDriver session");
        Self { client, driver }
    }

    /// Ends the WebDriver session (Chromium quits); dropping the Browser then stops chromedriver.
    pub async fn close(&self) {
        self.client
            .clone()
            .close()
            .await
            .expect("close the session");
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Polls `script` until it returns something truthy; returns that.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        eventually(WAIT, what, || async {
            let v = self.js(script).await;
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            truthy.then_some(v)
        })
        .await
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let input = self.client.find(Locator::Css(css)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    /// Waits for the console to finish a view (stats, series, first page).
    pub async fn console_loaded(&self) {
        self.until(
            "console loaded",
            "return document.body.dataset.loaded === 'true'",
        )
        .await;
    }

    /// Saves a PNG of the page's top as `dir/name`.
    pub async fn screenshot(&self, dir: &Path, name: &str) {
        self.js("window.scrollTo(0, 0); return true").await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}
