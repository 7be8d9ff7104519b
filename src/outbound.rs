//! A session's outbound queue, and [`Reply`], the handle through which a request's answer
//! reaches it. The queue is bounded in frames and in bytes, fed with `try_send` by anyone
//! (room actors, the session's own reader, the hub) and drained by the session's writer task.
//!
//! Nobody ever waits on a slow client: when the queue is full or past its byte budget, the push
//! fails and the session is closed as a slow consumer (close 4000); the client resumes by seq.
//!
//! Room events are encoded once per encoding ([`SharedEvent`]) and their bytes shared by every
//! recipient.

use crate::error::ApiError;
use crate::metrics::METRICS;
use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use crossroom_protocol::close::CloseReason;
use crossroom_protocol::{encode, Encoding, Event, ServerFrame};
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use tokio::sync::{oneshot, watch};

/// Why and how a session is being closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    pub reason: CloseReason,
    /// Send what is already queued before the close frame (graceful shutdown, a refusal the
    /// client should read), or not (the client is not reading, or broke the stream).
    pub drain: bool,
}

impl CloseRequest {
    pub fn code(&self) -> u16 {
        self.reason.code()
    }
}

impl From<CloseReason> for CloseRequest {
    /// Queued frames go out first unless the client cannot or will not read them.
    fn from(reason: CloseReason) -> Self {
        let drain = !matches!(
            reason,
            CloseReason::Normal
                | CloseReason::SlowConsumer
                | CloseReason::PingTimeout
                | CloseReason::TooBig
                | CloseReason::WebSocketError
                | CloseReason::Internal
        );
        CloseRequest { reason, drain }
    }
}

/// The sending half, cloned into every place that delivers to this session.
#[derive(Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
}

/// The queue itself is a `VecDeque` under a lock held for a push or a pop, not a tokio channel:
/// an idle session's queue then costs nothing (a channel allocates a block of slots up front),
/// which matters at tens of thousands of mostly idle connections per node.
struct Shared {
    queue: Mutex<VecDeque<Message>>,
    /// Wakes the writer after a push or a close request: the one thing an idle writer waits
    /// on. A swap and a wake per push, no lock (a `Notify` keeps its waiters in a locked list).
    pushed: AtomicWaker,
    frame_budget: usize,
    /// The writer is gone: pushes fail.
    shut: AtomicBool,
    encoding: Encoding,
    /// Bytes pushed and not yet written to the socket.
    queued_bytes: AtomicUsize,
    byte_budget: usize,
    /// Set once, by whoever closes first.
    close: watch::Sender<Option<CloseRequest>>,
}

/// The receiving half, owned by the writer task.
pub struct OutboundReceiver {
    shared: Arc<Shared>,
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        self.shut();
    }
}

/// The push failed: the session is closed (or is being closed now).
#[derive(Debug, PartialEq, Eq)]
pub struct SessionClosed;

/// A queue of `frames` messages and `bytes` bytes for a session speaking `encoding`.
pub fn channel(encoding: Encoding, frames: usize, bytes: usize) -> (Outbound, OutboundReceiver) {
    let (close, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        pushed: AtomicWaker::new(),
        frame_budget: frames,
        shut: AtomicBool::new(false),
        encoding,
        queued_bytes: AtomicUsize::new(0),
        byte_budget: bytes,
        close,
    });
    (
        Outbound {
            shared: shared.clone(),
        },
        OutboundReceiver { shared },
    )
}

fn message_len(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) => 2,
    }
}

impl Outbound {
    pub fn encoding(&self) -> Encoding {
        self.shared.encoding
    }

    /// Queue an encoded message; closes the session as a slow consumer when it does not fit.
    pub fn push(&self, msg: Message) -> Result<(), SessionClosed> {
        let pushed = self.try_push(msg);
        if pushed.is_err() {
            METRICS.queue_drops.inc();
        }
        pushed
    }

    fn try_push(&self, msg: Message) -> Result<(), SessionClosed> {
        if self.is_closing() {
            return Err(SessionClosed);
        }
        let len = message_len(&msg);
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > self.shared.byte_budget {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.slow_consumer();
            return Err(SessionClosed);
        }
        let full = {
            let Ok(mut q) = self.shared.queue.lock() else {
                return Err(SessionClosed);
            };
            if q.len() >= self.shared.frame_budget {
                true
            } else {
                q.push_back(msg);
                false
            }
        };
        if full {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.slow_consumer();
            return Err(SessionClosed);
        }
        self.shared.pushed.wake();
        Ok(())
    }

    /// Encode `frame` in this session's encoding and queue it.
    pub fn send(&self, frame: &ServerFrame) -> Result<(), SessionClosed> {
        match encode_frame(self.shared.encoding, frame) {
            Some(m) => self.push(m),
            None => Err(SessionClosed),
        }
    }

    /// [`Outbound::send`] for a frame whose loss needs no handling: a session that cannot take
    /// it is closing already (its queue is full or its socket gone), and what a client missed
    /// there it learns again on reconnect — a reply by retrying, a push by reloading.
    pub fn tell(&self, frame: &ServerFrame) {
        if self.send(frame).is_err() {
            tracing::trace!("frame for a closing session dropped");
        }
    }

    /// Queue a shared room event.
    pub fn send_event(&self, event: &SharedEvent) -> Result<(), SessionClosed> {
        match event.message(self.shared.encoding) {
            Some(m) => self.push(m),
            None => Err(SessionClosed),
        }
    }

    fn slow_consumer(&self) {
        tracing::debug!("slow consumer: outbound queue full");
        let first = self
            .shared
            .request_close(CloseRequest::from(CloseReason::SlowConsumer));
        if first {
            METRICS.slow_consumers.inc();
        }
    }

    /// Ask the session to close; the first request wins.
    pub fn close(&self, req: CloseRequest) {
        // A later request loses to the first one, by design.
        let _ = self.shared.request_close(req);
    }

    pub fn is_closing(&self) -> bool {
        self.shared.close.borrow().is_some() || self.shared.shut.load(Ordering::Acquire)
    }

    /// Resolves when someone asked this session to close.
    pub async fn closing(&self) -> CloseRequest {
        wait_close(&self.shared).await
    }

    /// True when both halves are the same session.
    pub fn same_session(&self, other: &Outbound) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Shared {
    /// The first close request wins; later ones are ignored. True when this one won.
    fn request_close(&self, req: CloseRequest) -> bool {
        let first = self.close.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(req);
                true
            } else {
                false
            }
        });
        if first {
            self.pushed.wake();
        }
        first
    }
}

async fn wait_close(shared: &Shared) -> CloseRequest {
    let mut rx = shared.close.subscribe();
    loop {
        if let Some(c) = rx.borrow_and_update().clone() {
            return c;
        }
        if rx.changed().await.is_err() {
            // The sender lives in `shared`, which we borrow: unreachable, but stay safe.
            return CloseRequest::from(CloseReason::Internal);
        }
    }
}

impl OutboundReceiver {
    /// The next queued message, or the close request when one arrives first. Returns
    /// `Err(close)` once the session must close.
    pub async fn next(&mut self) -> Result<Message, CloseRequest> {
        std::future::poll_fn(|cx| {
            if let Some(ready) = self.ready() {
                return Poll::Ready(ready);
            }
            self.shared.pushed.register(cx.waker());
            // A push or a close request between the look above and the registration found no
            // waker to wake: look once more.
            match self.ready() {
                Some(ready) => Poll::Ready(ready),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The close request if there is one (it wins over queued messages, as it always did), else
    /// the next queued message.
    fn ready(&mut self) -> Option<Result<Message, CloseRequest>> {
        if let Some(c) = self.shared.close.borrow().clone() {
            return Some(Err(c));
        }
        self.try_next().map(Ok)
    }

    /// A message already queued, without waiting.
    pub fn try_next(&mut self) -> Option<Message> {
        let mut q = self.shared.queue.lock().ok()?;
        let m = q.pop_front();
        // After a burst, give the memory back: most sessions are idle most of the time.
        if q.is_empty() && q.capacity() > 64 {
            q.shrink_to(8);
        }
        m
    }

    /// Account for a message that left for the socket.
    pub fn written(&self, msg_len: usize) {
        self.shared
            .queued_bytes
            .fetch_sub(msg_len, Ordering::AcqRel);
    }

    pub fn len_of(msg: &Message) -> usize {
        message_len(msg)
    }

    /// A handle on the close signal, usable while the receiver is borrowed.
    pub fn watcher(&self) -> CloseWatch {
        CloseWatch(self.shared.clone())
    }

    /// Stop accepting pushes (the socket is gone).
    pub fn shut(&mut self) {
        self.shared.shut.store(true, Ordering::Release);
    }
}

/// The close signal of one session, for the writer task.
pub struct CloseWatch(Arc<Shared>);

impl CloseWatch {
    /// Resolves when a close that must not wait for queued frames is requested (slow consumer,
    /// protocol error); a draining close lets the current batch finish.
    pub async fn until_abort(&self) -> CloseRequest {
        let mut rx = self.0.close.subscribe();
        loop {
            if let Some(c) = rx.borrow_and_update().clone() {
                if !c.drain {
                    return c;
                }
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Record why the session closed (first request wins).
    pub fn set(&self, req: CloseRequest) {
        self.0.request_close(req);
    }
}

/// Encode one frame for one session. Frames are plain data, so this only fails on a bug; the
/// session is then closed rather than sent a broken frame.
pub fn encode_frame(encoding: Encoding, frame: &ServerFrame) -> Option<Message> {
    match encode(encoding, frame) {
        Ok(bytes) => Some(match encoding {
            Encoding::MsgPack => Message::Binary(Bytes::from(bytes)),
            Encoding::Json => Message::Text(Utf8Bytes::try_from(Bytes::from(bytes)).ok()?),
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a frame");
            None
        }
    }
}

/// A room event to fan out, encoded at most once per encoding whatever the number of
/// recipients.
pub struct SharedEvent {
    frame: ServerFrame,
    msgpack: OnceLock<Option<Message>>,
    json: OnceLock<Option<Message>>,
}

impl SharedEvent {
    pub fn new(event: Event) -> SharedEvent {
        SharedEvent {
            frame: ServerFrame::Event(event),
            msgpack: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// The frame (an `event`).
    pub fn frame(&self) -> &ServerFrame {
        &self.frame
    }

    /// The event as a message in `encoding`; the bytes are shared, not copied.
    pub fn message(&self, encoding: Encoding) -> Option<Message> {
        let cell = match encoding {
            Encoding::MsgPack => &self.msgpack,
            Encoding::Json => &self.json,
        };
        cell.get_or_init(|| encode_frame(encoding, &self.frame))
            .clone()
    }
}

/// Identifies one session on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// A typed answer to a request, turned into its frame only at the session edge.
pub trait Answer: Send + 'static {
    /// The frame answering request `id`.
    fn into_frame(self, id: u32) -> ServerFrame;
}

/// A frame answers as itself (it names its request already).
impl Answer for ServerFrame {
    fn into_frame(self, _id: u32) -> ServerFrame {
        self
    }
}

/// Where a request's answer goes: the requesting session's queue (replies and pushes then keep
/// their order; the answer becomes its frame there), or a one-shot channel that hands the typed
/// answer, or the refusal, to a caller that is not a session (the admin API).
pub struct Reply<T = ServerFrame> {
    pub id: u32,
    target: ReplyTarget<T>,
}

enum ReplyTarget<T> {
    Session(Outbound),
    /// Taken by the first answer sent.
    Once(std::sync::Mutex<Option<oneshot::Sender<Result<T, ApiError>>>>),
}

impl<T: Answer> Reply<T> {
    pub fn session(out: Outbound, id: u32) -> Reply<T> {
        Reply {
            id,
            target: ReplyTarget::Session(out),
        }
    }

    /// A reply that lands in the returned receiver.
    pub fn channel() -> (Reply<T>, oneshot::Receiver<Result<T, ApiError>>) {
        let (tx, rx) = oneshot::channel();
        (
            Reply {
                id: 0,
                target: ReplyTarget::Once(std::sync::Mutex::new(Some(tx))),
            },
            rx,
        )
    }

    /// The session behind this reply, if it comes from one.
    pub fn outbound(&self) -> Option<&Outbound> {
        match &self.target {
            ReplyTarget::Session(o) => Some(o),
            ReplyTarget::Once(_) => None,
        }
    }

    pub fn send(&self, answer: T) {
        self.deliver(Ok(answer));
    }

    pub fn fail(&self, e: ApiError) {
        self.deliver(Err(e));
    }

    fn deliver(&self, answer: Result<T, ApiError>) {
        match &self.target {
            // A session that cannot take its reply is being closed; the client retries on
            // reconnect (posts are idempotent by client_msg_id).
            ReplyTarget::Session(out) => {
                let frame = match answer {
                    Ok(a) => a.into_frame(self.id),
                    Err(e) => e.to_frame(Some(self.id)),
                };
                out.tell(&frame);
            }
            ReplyTarget::Once(tx) => {
                if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                    // The caller may have given up waiting; nothing to do then.
                    let _ = tx.send(answer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossroom_protocol::{EventBody, RoomId, UserId};

    fn ev(n: u64) -> SharedEvent {
        SharedEvent::new(Event {
            room: RoomId::from("r"),
            epoch: 1,
            seq: n,
            ts: 0,
            author: UserId::from("a@b.c"),
            body: EventBody::Message {
                client_msg_id: format!("{n}"),
                text: "x".repeat(100),
                attachments: vec![],
                mentions: vec![],
                recalled: false,
            },
        })
    }

    #[tokio::test]
    async fn full_queue_closes_as_slow_consumer() {
        let (out, mut rx) = channel(Encoding::MsgPack, 4, 1 << 20);
        for i in 0..4 {
            assert!(out.send_event(&ev(i)).is_ok());
        }
        assert_eq!(out.send_event(&ev(9)), Err(SessionClosed));
        assert!(out.is_closing());
        let c = rx.next().await.expect_err("closing");
        assert_eq!(c.reason, CloseReason::SlowConsumer);
    }

    #[tokio::test]
    async fn byte_budget_closes_as_slow_consumer() {
        let one = ev(0)
            .message(Encoding::MsgPack)
            .map(|m| message_len(&m))
            .unwrap_or(0);
        let (out, mut rx) = channel(Encoding::MsgPack, 1000, one * 3);
        for i in 0..3 {
            assert!(out.send_event(&ev(i)).is_ok());
        }
        assert_eq!(out.send_event(&ev(3)), Err(SessionClosed));
        // Writing frees budget, but the session is already closed: it must resume instead.
        let m = rx.try_next().expect("queued");
        rx.written(OutboundReceiver::len_of(&m));
        assert!(out.send_event(&ev(4)).is_err());
    }

    #[test]
    fn events_are_encoded_once_and_shared() {
        let e = ev(1);
        let a = e.message(Encoding::MsgPack);
        let b = e.message(Encoding::MsgPack);
        match (a, b) {
            (Some(Message::Binary(a)), Some(Message::Binary(b))) => {
                assert_eq!(a.as_ptr(), b.as_ptr(), "same bytes, not a copy")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(e.message(Encoding::Json), Some(Message::Text(_))));
    }

    #[tokio::test]
    async fn first_close_request_wins() {
        let (out, mut rx) = channel(Encoding::Json, 8, 1 << 20);
        out.close(CloseRequest::from(CloseReason::GoingAway));
        out.close(CloseRequest::from(CloseReason::SlowConsumer));
        assert_eq!(
            rx.next().await.expect_err("closing").reason,
            CloseReason::GoingAway
        );
    }

    /// The writer waits while the queue is empty; a push from another thread, and then a close
    /// request, each wake it — many times over, so that a wake-up lost between its look at the
    /// queue and its registration would leave it waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_writer_is_woken_by_every_push_and_by_a_close() {
        for _ in 0..200 {
            let (out, mut rx) = channel(Encoding::MsgPack, 8, 1 << 20);
            let writer = tokio::spawn(async move {
                let mut got = 0;
                loop {
                    match rx.next().await {
                        Ok(_) => got += 1,
                        Err(c) => return (got, c.reason),
                    }
                }
            });
            for i in 0..3 {
                tokio::task::yield_now().await;
                assert!(out.send_event(&ev(i)).is_ok());
                // Let the writer take it and wait again.
                while !out
                    .shared
                    .queue
                    .lock()
                    .map(|q| q.is_empty())
                    .unwrap_or(true)
                {
                    tokio::task::yield_now().await;
                }
            }
            out.close(CloseRequest::from(CloseReason::GoingAway));
            // Bounded only so that a lost wake-up fails instead of hanging the suite.
            let ended = tokio::time::timeout(std::time::Duration::from_secs(30), writer).await;
            let (got, reason) = ended.expect("the writer was not woken").expect("writer");
            assert_eq!(reason, CloseReason::GoingAway);
            assert_eq!(got, 3, "every push was taken before the close");
        }
    }
}
