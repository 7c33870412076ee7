//! A real browser for the tests: Debian's Chromium, headless, driven over
//! W3C WebDriver through Debian's `chromedriver` (the same protocol Selenium
//! speaks), on loopback. A missing browser or driver fails the test that
//! wants one: `scripts/install-deps.sh` installs both.
//!
//! Each [`Browser`] has its own chromedriver, its own Chromium and a new,
//! empty profile directory; dropping it ends the session (Chromium quits)
//! and kills the chromedriver it started, by its process group.

use super::TempDir;
use super::process::kill_and_reap;
use base64::Engine;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The browser itself (`/usr/bin/chromium` is a shell wrapper around it).
const CHROMIUM: &str = "/usr/lib/chromium/chromium";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: TempDir,
}

/// A WebDriver element reference.
#[derive(Clone, Debug)]
pub struct Element(String);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height`
    /// window.
    pub fn start(test: &str, width: u32, height: u32) -> Browser {
        Browser::start_with(test, width, height, &[])
    }

    /// [`Browser::start`] with more Chromium flags.
    pub fn start_with(test: &str, width: u32, height: u32, extra: &[&str]) -> Browser {
        for (what, path) in [("chromedriver", CHROMEDRIVER), ("chromium", CHROMIUM)] {
            assert!(
                Path::new(path).exists(),
                "{what} is not installed at {path}: run scripts/install-deps.sh (Debian's chromium and chromium-driver)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let profile = TempDir::new(test, "chromium-profile");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser
            .call("GET", "/status", None)
            .ok()
            .and_then(|v| v["value"]["ready"].as_bool())
            != Some(true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The flags this closed network needs: nothing reaches out on its own.
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--user-data-dir={}", browser._profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = browser
            .call("POST", "/session", Some(caps))
            .expect("a WebDriver session");
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        browser.viewport(width, height);
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let url = format!("{}{path}", self.base);
        let mut resp = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            (_, body) => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status != 200 {
            return Err(format!("{method} {path}: {status} {v}"));
        }
        Ok(v)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        match self.call(method, &path, body) {
            Ok(v) => v["value"].clone(),
            Err(e) => panic!("WebDriver: {e}"),
        }
    }

    /// The page's viewport is exactly `width`×`height` CSS pixels at scale 1,
    /// a phone's (touch, mobile viewport) below 700 pixels.
    pub fn viewport(&self, width: u32, height: u32) {
        let mobile = width < 700;
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        let inner = self.script("return [window.innerWidth, window.innerHeight]", &[]);
        assert_eq!(inner, json!([width, height]), "the viewport");
    }

    /// A DevTools command, through chromedriver.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.session_call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `body` as a function of `args` in the page; its return value.
    pub fn script(&self, body: &str, args: &[Value]) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": body, "args": args})),
        )
    }

    /// Runs `body` in the page as an async function of `args` (the last
    /// argument is the callback that returns its value).
    pub fn script_async(&self, body: &str, args: &[Value]) -> Value {
        self.session_call(
            "POST",
            "/execute/async",
            Some(json!({"script": body, "args": args})),
        )
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> Element {
        let v = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        Element(
            v[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {v}"))
                .to_owned(),
        )
    }

    pub fn click(&self, e: &Element) {
        self.session_call("POST", &format!("/element/{}/click", e.0), None);
    }

    /// Types `text` into an element as keystrokes ("\u{E00C}" is Escape,
    /// "\u{E007}" Enter).
    pub fn type_into(&self, e: &Element, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
    }

    /// Presses keys on whatever has the focus.
    pub fn keys(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.session_call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// The viewport as PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.session_call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a base64 screenshot"))
            .expect("base64")
    }

    /// Polls `script` (a function body returning JSON) until `done` says so;
    /// panics with the last value after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.script(script, &[]);
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still {v} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        kill_and_reap(&mut self.driver, true, "chromedriver");
    }
}
