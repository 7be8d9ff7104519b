//! The pages the binary serves: a chat page (`/`) and an ops dashboard (`/dashboard`), and the
//! JavaScript client library (`/assets/crossroom.mjs`). Plain HTML, CSS and JavaScript compiled
//! into the binary — no build step, no third-party code. They speak the public protocols only
//! (`/v1/ws`, `/v1/ops`), like any client.

use crate::hub::Hub;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "chat.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("chat.js"),
    },
    // The client library, an ES module other web apps may import too.
    Asset {
        name: "crossroom.mjs",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("crossroom.mjs"),
    },
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("favicon.svg"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("style.css"),
    },
];

/// Scripts come only from this server; sockets only to it; nothing inline.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/", get(|| async { page(include_str!("chat.html")) }))
        .route(
            "/dashboard",
            get(|| async { page(include_str!("dashboard.html")) }),
        )
        .route("/assets/{name}", get(asset))
        // Browsers and tools ask for it whatever the page links; the pages link the SVG.
        .route(
            "/favicon.ico",
            get(|| async { with_headers(include_str!("favicon.svg"), "image/svg+xml") }),
        )
        .route("/v1/origin", axum::routing::post(origin))
}

/// `POST /v1/origin`: whether a page of this request's `Origin` may open a WebSocket session,
/// and if not, what to configure. A browser cannot read why an upgrade was refused (the socket
/// just fails), so the chat page asks here when its socket never opened. (A POST: browsers send
/// `Origin` with it.)
async fn origin(
    axum::extract::State(hub): axum::extract::State<Arc<Hub>>,
    headers: axum::http::HeaderMap,
) -> axum::Json<serde_json::Value> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    match crate::session::admit_upgrade(&hub, &headers) {
        Ok(()) => axum::Json(serde_json::json!({ "admitted": true, "origin": origin })),
        Err((reason, e)) => axum::Json(serde_json::json!({
            "admitted": false, "origin": origin, "reason": reason, "message": e.message
        })),
    }
}

fn page(html: &'static str) -> Response {
    with_headers(html, "text/html; charset=utf-8")
}

fn with_headers(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => with_headers(a.body, a.content_type),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
