//! End to end in real headless Chromium: log in, open the first flag, correct it with the
//! keyboard only, then check the stored value, the export and the audit entry. Screenshots go to
//! `target/e2e/`. Skips (with a message) when chromium or chromedriver is missing, unless
//! REKAP_REQUIRE_BROWSER=1.

mod serve_support;

use fantoccini::{ClientBuilder, Locator};
use rekap::serve::ServeConfig;
use rekap::store::Store;
use serve_support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// WebDriver key code of Enter.
const ENTER: &str = "\u{E007}";

fn find_program(env_var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until<F, Fut>(what: &str, mut f: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewer_corrects_a_flag_with_the_keyboard_in_chromium() {
    let required = std::env::var("REKAP_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let chromium = find_program(
        "REKAP_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let driver = find_program("REKAP_CHROMEDRIVER", &["chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        assert!(
            !required,
            "REKAP_REQUIRE_BROWSER=1 but chromium/chromedriver were not found"
        );
        println!(
            "SKIPPED: chromium and chromedriver not found (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e");
    std::fs::create_dir_all(&out_dir).unwrap();

    // The review service on a loopback port, plain http (insecure cookie for localhost).
    let data = tempfile::tempdir().unwrap();
    let sid = setup(data.path());
    let config = ServeConfig {
        secure_cookie: false,
        ..ServeConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app_state = state(data.path(), config);
    tokio::spawn(rekap::serve::serve(listener, app_state));

    // chromedriver on a free loopback port.
    let port = free_port();
    let _driver = KillOnDrop(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), "chrome".into());
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1500,1100",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    let client = loop {
        let mut b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        b.capabilities(caps.clone());
        match b.connect(&webdriver).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "chromedriver: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    let result = async {
        client.goto(&format!("http://{addr}/")).await?;
        let name = client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Id("login-name"))
            .await?;
        name.send_keys(REVIEWER).await?;
        let pw = client.find(Locator::Id("login-password")).await?;
        pw.send_keys(PASSWORD).await?;
        pw.send_keys(ENTER).await?;
        // Queue view with the start button focused: Enter opens the first (most urgent) flag.
        wait_until("the queue", || async {
            let el = client.find(Locator::Id("queue-count")).await.ok()?;
            let t = el.text().await.ok()?;
            (t == "3").then_some(t)
        })
        .await;
        client.active_element().await?.send_keys(ENTER).await?;
        wait_until("the first flag", || async {
            let t = client
                .find(Locator::Id("item-field"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (t == "dpt.p").then_some(t)
        })
        .await;
        // Before typing, the sum rule fails (300 != 120 + 130).
        let rules = client.find(Locator::Id("rules")).await?.text().await?;
        assert!(rules.contains("VIOLATED"), "{rules}");
        // Type the value seen on the photo into the focused field; the rule is rechecked live.
        client.active_element().await?.send_keys("180").await?;
        let rules = client.find(Locator::Id("rules")).await?.text().await?;
        assert!(rules.contains("holds"), "{rules}");
        // Let the photo draw, then keep a screenshot of the review screen.
        tokio::time::sleep(Duration::from_millis(500)).await;
        std::fs::write(out_dir.join("review.png"), client.screenshot().await?).unwrap();
        client.active_element().await?.send_keys(ENTER).await?;
        let status = wait_until("the saved message", || async {
            let t = client
                .find(Locator::Id("status"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            t.starts_with("Saved").then_some(t)
        })
        .await;
        assert!(
            status.contains("dpt.p = 180 (reviewer_corrected)"),
            "{status}"
        );
        // The next flag opened by itself.
        let f = client.find(Locator::Id("item-field")).await?.text().await?;
        assert_eq!(f, "dpt.lp");
        std::fs::write(out_dir.join("after-save.png"), client.screenshot().await?).unwrap();
        // `o`: the sum is written inconsistently on paper (officer error); then `n` skips the
        // last flag, which ends the round back at the queue.
        client.active_element().await?.send_keys("o").await?;
        wait_until("the officer-inconsistency save", || async {
            let t = client
                .find(Locator::Id("status"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            t.contains("dpt.lp").then_some(t)
        })
        .await;
        let f = client.find(Locator::Id("item-field")).await?.text().await?;
        assert_eq!(f, "b1.l");
        client.active_element().await?.send_keys("n").await?;
        wait_until("the queue after skipping", || async {
            let t = client
                .find(Locator::Id("queue-note"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            t.contains("skipped").then_some(t)
        })
        .await;
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    let _ = client.close().await;
    result.unwrap();

    // Stored value, audit entry, export.
    let store = Store::open(data.path()).unwrap();
    assert_eq!(store.current_values(sid).unwrap()["dpt.p"], Some(180));
    let log = store.audit_entries(Some(sid)).unwrap();
    let e = log
        .iter()
        .rev()
        .find(|e| e.field.as_deref() == Some("dpt.p"))
        .unwrap();
    assert_eq!(
        (
            e.actor.as_str(),
            e.field.as_deref(),
            e.old_value.as_deref(),
            e.new_value.as_deref()
        ),
        (REVIEWER, Some("dpt.p"), Some("130"), Some("180"))
    );
    let ex = store.export().unwrap();
    let lp = &ex[0].fields["dpt.lp"];
    assert_eq!(
        (lp.value, lp.provenance.as_str()),
        (Some(300), "officer_inconsistency")
    );
    assert_eq!(ex[0].fields["b1.l"].provenance, "unreviewed");
    assert!(store.verify_audit().unwrap().is_ok());
    drop(store);
    let a = addr;
    let csv = tokio::task::spawn_blocking(move || {
        let (cookie, _) = http_login(a, SUPERVISOR);
        http(a, "GET", "/api/export.csv", Some(&cookie), None, None).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(csv.status, 200);
    assert!(
        csv.body
            .lines()
            .any(|l| l.starts_with(&format!("{sid},tps-001,,dpt.p,180,reviewer_corrected,130,"))),
        "{}",
        csv.body
    );
    println!("screenshots in {}", out_dir.display());
}

/// Manual check against a running server (e.g. `rekap serve --demo`): logs in with
/// REKAP_E2E_USER / REKAP_E2E_PASSWORD at REKAP_E2E_URL (loopback), opens the first flag and
/// saves `target/e2e/demo.png`. Changes nothing. `cargo test --test serve_e2e -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn screenshot_of_a_running_server() {
    let (Ok(url), Ok(user), Ok(pass)) = (
        std::env::var("REKAP_E2E_URL"),
        std::env::var("REKAP_E2E_USER"),
        std::env::var("REKAP_E2E_PASSWORD"),
    ) else {
        println!("SKIPPED: set REKAP_E2E_URL, REKAP_E2E_USER, REKAP_E2E_PASSWORD");
        return;
    };
    assert!(url.starts_with("http://127.0.0.1:"), "loopback only");
    let chromium = find_program("REKAP_CHROMIUM", &["chromium"]).expect("chromium");
    let driver = find_program("REKAP_CHROMEDRIVER", &["chromedriver"]).expect("chromedriver");
    let port = free_port();
    let _driver = KillOnDrop(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"binary": chromium, "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1500,1100",
            format!("--user-data-dir={}", profile.path().display())]}),
    );
    let start = Instant::now();
    let client = loop {
        let mut b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        b.capabilities(caps.clone());
        match b.connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "chromedriver: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    client.goto(&url).await.unwrap();
    let name = client
        .wait()
        .for_element(Locator::Id("login-name"))
        .await
        .unwrap();
    name.send_keys(&user).await.unwrap();
    let pw = client.find(Locator::Id("login-password")).await.unwrap();
    pw.send_keys(&pass).await.unwrap();
    pw.send_keys(ENTER).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(
        out_dir.join("demo-queue.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
    client
        .active_element()
        .await
        .unwrap()
        .send_keys(ENTER)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    std::fs::write(out_dir.join("demo.png"), client.screenshot().await.unwrap()).unwrap();
    // Give the lease back so the item stays available.
    client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E00C}")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = client.close().await;
}
