#![allow(dead_code)] // shared helpers; not every test uses every one
//! Starting and stopping the real server for tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub url: String,
    pub grpc: Option<String>,
    child: Option<Child>,
    dir: PathBuf,
    /// Keeps the temporary directory alive for the server's lifetime.
    _tmp: Option<tempfile::TempDir>,
    args: Vec<String>,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tracebox")
}

/// A port that is free right now (for servers that cannot take port 0,
/// such as gRPC next to HTTP).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    /// Starts a server on a fresh data directory.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server {
            url: String::new(),
            grpc: None,
            child: None,
            dir,
            _tmp: Some(tmp),
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    /// Starts a server on an existing directory (kept by the caller).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        let mut s = Server {
            url: String::new(),
            grpc: None,
            child: None,
            dir: dir.to_path_buf(),
            _tmp: None,
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--data")
            .arg(&self.dir)
            .args(["--host", "127.0.0.1"]);
        if !self.args.iter().any(|a| a == "--port") {
            cmd.args(["--port", "0"]);
        }
        if !self.args.iter().any(|a| a == "--otlp-grpc-port") {
            cmd.args(["--otlp-grpc-port", "0"]);
        }
        cmd.args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn tracebox");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut url = None;
        let mut grpc = None;
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(u) = line.strip_prefix("tracebox listening on ") {
                url = Some(u.trim().to_string());
            }
            if let Some(g) = line.strip_prefix("tracebox OTLP/gRPC on ") {
                grpc = Some(format!("http://{}", g.trim()));
            }
            let want_grpc = self.args.iter().any(|a| a == "--otlp-grpc-port");
            if url.is_some() && (!want_grpc || grpc.is_some()) {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.url = url.expect("server printed its URL");
        self.grpc = grpc;
        self.child = Some(child);
    }

    /// Stops the server abruptly (SIGKILL), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts it again on the same directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.url.clone(),
            http: reqwest::Client::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A thin JSON client for MLflow-shaped calls.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Client {
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let url = format!("{}{}", self.base, path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text }
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Some(body)).await
    }

    /// Waits until the full-text index has everything committed so far
    /// (the status endpoint's `index.caught_up`): after it, text searches
    /// see every trace written before the call. The index catches up in
    /// the background, so tests that search text right after writing wait
    /// for this condition instead of guessing a delay.
    pub async fn wait_for_index(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.get("/api/tracebox/v1/status").await;
            if r.body["index"]["caught_up"] == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the full-text index did not catch up: {}",
                r.text
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    /// POSTs raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        ctype: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("content-type", ctype)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text }
    }
}
