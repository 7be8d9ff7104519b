//! A small client for the integration tests and the load tester: a WebSocket session that sends
//! requests and reads replies and pushes, and an HTTP client for the admin API.
//!
//! It is deliberately plain — one task owns one connection — so tests read top to bottom.

use crate::codec::{decode, encode, CodecError, Encoding};
use crate::frame::{ClientFrame, ServerFrame};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use tokio_tungstenite::tungstenite::Message as WsMessage;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    #[error("http: {0}")]
    Http(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("connection closed (code {code:?}: {reason})")]
    Closed { code: Option<u16>, reason: String },
    #[error("unexpected frame: {0:?}")]
    Unexpected(Box<ServerFrame>),
}

/// How long a test waits for any one frame before calling it lost.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// One WebSocket session.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    encoding: Encoding,
    next_id: u32,
    /// Pushes (and replies to other requests) read while waiting for a particular reply.
    backlog: VecDeque<ServerFrame>,
}

impl Client {
    /// Connect to `ws_url` (e.g. `ws://127.0.0.1:8080/v1/ws`). With `token`, it goes in the
    /// `Authorization` header and the server's `hello` is awaited and returned.
    pub async fn connect(
        ws_url: &str,
        token: Option<&str>,
        encoding: Encoding,
    ) -> Result<(Client, Option<ServerFrame>), ClientError> {
        let req = upgrade_request(ws_url, token, encoding)?;
        let (ws, _resp) = tokio_tungstenite::connect_async(req).await?;
        Client::start(ws, token.is_some(), encoding).await
    }

    /// As [`Client::connect`], over a TCP connection the caller dialled (the load tester binds
    /// it to one of several source addresses), with a small read buffer (tungstenite's default
    /// of 128 KiB, zero-filled, would cost a load tester holding 15,000 connections 2 GiB).
    pub async fn connect_stream(
        stream: TcpStream,
        ws_url: &str,
        token: Option<&str>,
        encoding: Encoding,
    ) -> Result<(Client, Option<ServerFrame>), ClientError> {
        let req = upgrade_request(ws_url, token, encoding)?;
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(
            req,
            MaybeTlsStream::Plain(stream),
            Some(small_buffers()),
        )
        .await?;
        Client::start(ws, token.is_some(), encoding).await
    }

    async fn start(
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
        authenticated: bool,
        encoding: Encoding,
    ) -> Result<(Client, Option<ServerFrame>), ClientError> {
        let mut client = Client {
            ws,
            encoding,
            next_id: 1,
            backlog: VecDeque::new(),
        };
        let hello = if authenticated {
            Some(client.next_frame(DEFAULT_WAIT).await?)
        } else {
            None
        };
        Ok((client, hello))
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Send a request with a fresh id and wait for its reply (error replies included). Frames
    /// that arrive meanwhile are kept for [`Client::next_push`].
    pub async fn request(&mut self, mut frame: ClientFrame) -> Result<ServerFrame, ClientError> {
        let id = self.send(&mut frame).await?;
        self.reply_to(id, DEFAULT_WAIT).await
    }

    /// Send a request with a fresh id without waiting; returns the id.
    pub async fn send(&mut self, frame: &mut ClientFrame) -> Result<u32, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        frame.set_id(id);
        let bytes = encode(self.encoding, frame)?;
        let msg = match self.encoding {
            Encoding::MsgPack => Message::Binary(Bytes::from(bytes)),
            Encoding::Json => Message::Text(
                String::from_utf8(bytes)
                    .map_err(|e| ClientError::Http(e.to_string()))?
                    .into(),
            ),
        };
        self.ws.send(msg).await?;
        Ok(id)
    }

    /// Send any WebSocket message as is (for hostile-input tests).
    pub async fn send_raw(&mut self, msg: Message) -> Result<(), ClientError> {
        self.ws.send(msg).await?;
        Ok(())
    }

    /// Wait for the reply to request `id`.
    pub async fn reply_to(&mut self, id: u32, wait: Duration) -> Result<ServerFrame, ClientError> {
        if let Some(pos) = self.backlog.iter().position(|f| f.reply_id() == Some(id)) {
            if let Some(f) = self.backlog.remove(pos) {
                return Ok(f);
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.read_frame(left).await?;
            if f.reply_id() == Some(id) {
                return Ok(f);
            }
            self.backlog.push_back(f);
        }
    }

    /// The next frame that is not a reply to a request made through [`Client::request`]: pushes
    /// first, in arrival order.
    pub async fn next_push(&mut self, wait: Duration) -> Result<ServerFrame, ClientError> {
        self.next_frame(wait).await
    }

    /// The next frame, from the backlog or the socket.
    pub async fn next_frame(&mut self, wait: Duration) -> Result<ServerFrame, ClientError> {
        if let Some(f) = self.backlog.pop_front() {
            return Ok(f);
        }
        self.read_frame(wait).await
    }

    /// Read the next frame from the socket, skipping control frames.
    async fn read_frame(&mut self, wait: Duration) -> Result<ServerFrame, ClientError> {
        // One deadline for the whole wait: control frames (the server's pings) do not extend it.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout("a frame"))?;
            match msg {
                None => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: "stream ended".into(),
                    })
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Binary(b))) => return Ok(decode(Encoding::MsgPack, &b)?),
                Some(Ok(Message::Text(t))) => return Ok(decode(Encoding::Json, t.as_bytes())?),
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClientError::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    })
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Wait for the server to close the connection; returns its close code. Frames before the
    /// close are discarded.
    pub async fn closed(&mut self, wait: Duration) -> Result<Option<u16>, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await {
                Ok(_) => continue,
                Err(ClientError::Closed { code, .. }) => return Ok(code),
                Err(ClientError::Ws(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Close politely.
    pub async fn close(mut self) {
        // The peer may already be gone; a failed close changes nothing for the caller.
        let _ = self
            .ws
            .close(Some(tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// A read buffer of 8 KiB (it grows for a larger frame).
pub fn small_buffers() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// The upgrade request: the encoding's subprotocol, and the token as a Bearer header.
fn upgrade_request(
    ws_url: &str,
    token: Option<&str>,
    encoding: Encoding,
) -> Result<tungstenite::handshake::client::Request, ClientError> {
    let mut req = ws_url.into_client_request()?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        encoding
            .subprotocol()
            .parse()
            .map_err(|_| ClientError::Http("bad subprotocol".into()))?,
    );
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {t}")
                .parse()
                .map_err(|_| ClientError::Http("bad token header".into()))?,
        );
    }
    Ok(req)
}

/// An HTTP/1.1 client for the admin API, one connection per request (set-up traffic only).
#[derive(Clone)]
pub struct Http {
    /// `host:port`
    addr: String,
    /// `Bearer` credential: the operator key or a company admin key.
    key: Option<String>,
}

/// An HTTP answer: status, raw bytes, and the JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: serde_json::Value,
    pub bytes: Bytes,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Every header, names lowercase.
    pub headers: Vec<(String, String)>,
}

impl HttpReply {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Http {
    /// `addr` is `host:port`.
    pub fn new(addr: impl Into<String>, key: Option<String>) -> Http {
        Http {
            addr: addr.into(),
            key,
        }
    }

    pub fn with_key(&self, key: impl Into<String>) -> Http {
        Http {
            addr: self.addr.clone(),
            key: Some(key.into()),
        }
    }

    pub async fn get(&self, path: &str) -> Result<HttpReply, ClientError> {
        self.call("GET", path, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<HttpReply, ClientError> {
        self.call("POST", path, Some(body)).await
    }

    pub async fn patch(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<HttpReply, ClientError> {
        self.call("PATCH", path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> Result<HttpReply, ClientError> {
        self.call("PUT", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<HttpReply, ClientError> {
        self.call("DELETE", path, None).await
    }

    /// One request with a JSON body (or none) on a fresh connection.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<HttpReply, ClientError> {
        match body {
            Some(v) => {
                let bytes = serde_json::to_vec(&v).map_err(|e| ClientError::Http(e.to_string()))?;
                self.call_raw(method, path, Some(("application/json", Bytes::from(bytes))))
                    .await
            }
            None => self.call_raw(method, path, None).await,
        }
    }

    /// One request with a raw body of the given content type.
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<HttpReply, ClientError> {
        let http_err = |e: &dyn std::fmt::Display| ClientError::Http(e.to_string());
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| http_err(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| http_err(&e))?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr);
        if let Some(k) = &self.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let payload = match body {
            Some((content_type, bytes)) => {
                req = req.header("content-type", content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).map_err(|e| http_err(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| http_err(&e))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| http_err(&e))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(HttpReply {
            status,
            body,
            bytes,
            content_type,
            headers,
        })
    }
}
