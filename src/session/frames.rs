//! Reading client frames off the socket: which messages carry data of the session's encoding,
//! and the errors and closes that answer bad ones.

use crate::error::ApiError;
use crate::outbound::CloseRequest;
use axum::extract::ws::Message;
use crossroom_protocol::close::CloseReason;
use crossroom_protocol::codec::salvage_request_id;
use crossroom_protocol::{Encoding, ErrorCode, ServerFrame};

pub enum FrameBytes {
    Data(bytes::Bytes),
    Control,
    WrongType,
}

/// The payload of a data frame of the session's type.
pub fn frame_bytes(m: &Message, encoding: Encoding) -> FrameBytes {
    match (m, encoding) {
        (Message::Binary(b), Encoding::MsgPack) => FrameBytes::Data(b.clone()),
        (Message::Text(t), Encoding::Json) => FrameBytes::Data(bytes::Bytes::from(t.clone())),
        (Message::Binary(_) | Message::Text(_), _) => FrameBytes::WrongType,
        _ => FrameBytes::Control,
    }
}

pub fn wrong_type_error(encoding: Encoding) -> ServerFrame {
    let want = match encoding {
        Encoding::MsgPack => "binary frames of MessagePack (subprotocol crossroom.v1.msgpack)",
        Encoding::Json => "text frames of JSON (subprotocol crossroom.v1.json)",
    };
    ApiError::new(ErrorCode::BadFrame, format!("this session expects {want}")).to_frame(None)
}

pub fn bad_frame_error(encoding: Encoding, bytes: &[u8], e: &dyn std::fmt::Display) -> ServerFrame {
    ApiError::new(ErrorCode::BadFrame, format!("cannot read this frame: {e}"))
        .to_frame(salvage_request_id(encoding, bytes))
}

pub fn protocol_error() -> CloseRequest {
    CloseRequest::from(CloseReason::TooManyBadFrames)
}

/// The close to answer a read error with: 1009 for an oversized message or frame.
pub fn read_error_close(e: axum::Error) -> CloseRequest {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    let inner = e.into_inner();
    let too_big = matches!(
        inner.downcast_ref::<WsError>(),
        Some(WsError::Capacity(
            CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders
        ))
    );
    if too_big {
        CloseRequest::from(CloseReason::TooBig)
    } else {
        tracing::debug!(error = %inner, "websocket read error");
        CloseRequest::from(CloseReason::WebSocketError)
    }
}
