//! The README's production section, run as written: its nginx configuration (taken from the
//! README itself, so the two cannot drift apart) in front of a server with `public_url`, over
//! TLS with a self-signed certificate. Through it: readiness, the page's WebSocket (101 and
//! `hello`), a foreign origin refused with the JSON error, `/metrics` kept from outside.
//! Needs `nginx`, `openssl` and `curl` (`scripts/test` installs nginx).

use crate::harness::*;
use std::process::Stdio;
use std::time::Duration;

/// The ```nginx block of the README.
fn readme_nginx() -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```nginx\n")
        .expect("an nginx block in the README")
        + 9;
    let end = start + readme[start..].find("```").expect("its end");
    readme[start..end].to_owned()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    l.local_addr().expect("addr").port()
}

/// Run curl against the proxy (name resolved to loopback, certificate not checked: it is
/// self-signed); its output with headers.
async fn curl(port: u16, path: &str, headers: &[String]) -> String {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sk", "--http1.1", "-i", "-N", "--max-time", "3"])
        .arg("--resolve")
        .arg(format!("chat.example.com:{port}:127.0.0.1"));
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    let out = cmd
        .arg(format!("https://chat.example.com:{port}{path}"))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_nginx_config_fronts_the_server_over_tls() {
    let port = free_port();
    let public = format!("https://chat.example.com:{port}");
    let server = Server::start_with_config(&format!("public_url = \"{public}\"\n")).await;
    let w = world(&server).await;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=chat.example.com", "-keyout"])
        .arg(d.join("key.pem"))
        .arg("-out")
        .arg(d.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    // The README's block as it is, but for what a test machine must change: the addresses,
    // the certificate's paths, no port-80 redirect, and a scraper's address that is not this
    // test's (it connects from loopback, and must be kept from /metrics).
    let site = readme_nginx()
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace(
            "/etc/letsencrypt/live/chat.example.com/fullchain.pem",
            &d.join("cert.pem").display().to_string(),
        )
        .replace(
            "/etc/letsencrypt/live/chat.example.com/privkey.pem",
            &d.join("key.pem").display().to_string(),
        )
        .replace("http://127.0.0.1:8080", &format!("http://{}", server.addr))
        .replace("allow 127.0.0.1;", "allow 192.0.2.1;")
        .lines()
        .filter(|l| !l.contains("listen 80;"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(site.contains(&server.addr) && site.contains("proxy_set_header Upgrade"));
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {0}/nginx.pid;\nerror_log {0}/error.log;\n\
         events {{}}\nhttp {{\naccess_log {0}/access.log;\nclient_body_temp_path {0};\n\
         proxy_temp_path {0};\n{site}\n}}\n",
        d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).expect("write");
    let mut nginx = tokio::process::Command::new("nginx")
        .args(["-p"])
        .arg(d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .kill_on_drop(true)
        .spawn()
        .expect("nginx (scripts/test installs it)");

    let mut ready = String::new();
    for _ in 0..100 {
        ready = curl(port, "/readyz", &[]).await;
        if ready.contains("\"ready\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready.contains("200") && ready.contains("\"ready\""),
        "{ready}"
    );

    let upgrade = |origin: &str, token: &str| {
        vec![
            "Connection: Upgrade".to_owned(),
            "Upgrade: websocket".to_owned(),
            "Sec-WebSocket-Version: 13".to_owned(),
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_owned(),
            "Sec-WebSocket-Protocol: crossroom.v1.json".to_owned(),
            format!("Origin: {origin}"),
            format!("Authorization: Bearer {token}"),
        ]
    };
    // The page's own origin (public_url) opens a session through the proxy.
    let ws = curl(port, "/v1/ws", &upgrade(&public, &w.alice.token)).await;
    assert!(ws.contains("101 Switching Protocols"), "{ws}");
    assert!(
        ws.contains("\"type\":\"hello\"") && ws.contains(w.alice.id.as_str()),
        "{ws}"
    );
    // Another site's page does not, and is told why.
    let evil = curl(
        port,
        "/v1/ws",
        &upgrade("https://evil.example", &w.alice.token),
    )
    .await;
    assert!(evil.contains("403"), "{evil}");
    assert!(
        evil.contains("\"code\":\"forbidden\"") && evil.contains("allowed_origins"),
        "{evil}"
    );
    // /metrics is for the scraper on the inside.
    let metrics = curl(port, "/metrics", &[]).await;
    assert!(metrics.starts_with("HTTP/1.1 403"), "{metrics}");
    let _ = nginx.kill().await;
}
