//! Encoding and decoding of frames: MessagePack (named fields, so any language's msgpack library
//! reads them as maps) or JSON. Both carry exactly the same frames.

use serde::de::DeserializeOwned;

use serde::Serialize;

/// How frames are encoded on one connection, chosen by WebSocket subprotocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Binary WebSocket frames holding MessagePack (`crossroom.v1.msgpack`).
    MsgPack,
    /// Text WebSocket frames holding JSON (`crossroom.v1.json`).
    Json,
}

impl Encoding {
    /// The encoding a subprotocol name selects.
    pub fn from_subprotocol(name: &str) -> Option<Encoding> {
        match name {
            crate::SUBPROTOCOL_MSGPACK => Some(Encoding::MsgPack),
            crate::SUBPROTOCOL_JSON => Some(Encoding::Json),
            _ => None,
        }
    }

    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::MsgPack => crate::SUBPROTOCOL_MSGPACK,
            Encoding::Json => crate::SUBPROTOCOL_JSON,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("msgpack encode: {0}")]
    MsgPackEncode(#[from] rmp_serde::encode::Error),
    #[error("msgpack decode: {0}")]
    MsgPackDecode(#[from] rmp_serde::decode::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encode a frame.
pub fn encode<T: Serialize>(encoding: Encoding, value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(match encoding {
        Encoding::MsgPack => rmp_serde::to_vec_named(value)?,
        Encoding::Json => serde_json::to_vec(value)?,
    })
}

/// Deepest nesting of maps and arrays a frame may have. Real frames are a few levels deep; the
/// limit keeps a hostile "depth bomb" from exhausting the decoder's stack. (serde_json has its
/// own limit of 128.)
pub const MAX_DEPTH: usize = 64;

/// Decode a frame.
pub fn decode<T: DeserializeOwned>(encoding: Encoding, bytes: &[u8]) -> Result<T, CodecError> {
    Ok(match encoding {
        Encoding::MsgPack => {
            let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
            de.set_max_depth(MAX_DEPTH);
            T::deserialize(&mut de)?
        }
        Encoding::Json => serde_json::from_slice(bytes)?,
    })
}

/// Why a request frame could not be read.
#[derive(Debug)]
pub enum RequestError {
    /// Not a request at all (not the encoding, no `type`, an unknown `type`, no `id`): a bad
    /// frame.
    Undecodable(CodecError),
    /// A known request with a missing or mistyped field: answered `invalid_argument` with its
    /// `id`; the message names the field.
    Invalid { id: u32, message: String },
}

/// Decode a request, telling a frame that is no request from a request with a wrong field.
pub fn decode_request(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<crate::frame::ClientFrame, RequestError> {
    let e = match decode(encoding, bytes) {
        Ok(frame) => return Ok(frame),
        Err(e) => e,
    };
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
        id: u32,
    }
    match decode::<Head>(encoding, bytes) {
        Ok(head) if crate::frame::ClientFrame::TYPES.contains(&head.kind.as_str()) => {
            Err(RequestError::Invalid {
                id: head.id,
                message: format!("invalid {}: {}", head.kind, field_error(&e)),
            })
        }
        _ => Err(RequestError::Undecodable(e)),
    }
}

/// The decoder's words without the encoding's prefix.
fn field_error(e: &CodecError) -> String {
    match e {
        CodecError::Json(e) => e.to_string(),
        CodecError::MsgPackDecode(e) => e.to_string(),
        CodecError::MsgPackEncode(e) => e.to_string(),
    }
}

/// Best effort: the `id` of a request that failed to decode as a whole, so its error can still
/// name it.
pub fn salvage_request_id(encoding: Encoding, bytes: &[u8]) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: u32,
    }
    decode::<IdOnly>(encoding, bytes).ok().map(|r| r.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_request_with_a_wrong_field_is_invalid_not_undecodable() {
        let missing = br#"{"type":"post","id":7,"room":"r_abc","text":"hi"}"#;
        match decode_request(Encoding::Json, missing) {
            Err(RequestError::Invalid { id: 7, message }) => {
                assert!(message.contains("client_msg_id"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let mistyped = br#"{"type":"post","id":8,"room":"r_abc","client_msg_id":"c","text":12345}"#;
        assert!(matches!(
            decode_request(Encoding::Json, mistyped),
            Err(RequestError::Invalid { id: 8, .. })
        ));
        for bad in [
            &br#"{"type":"no_such_thing","id":1}"#[..],
            br#"{"id":1}"#,
            br#"{"type":"post"}"#,
            b"not json",
        ] {
            assert!(
                matches!(
                    decode_request(Encoding::Json, bad),
                    Err(RequestError::Undecodable(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn every_request_type_is_listed() {
        for t in crate::frame::ClientFrame::TYPES {
            let bytes = format!(r#"{{"type":"{t}","id":1}}"#);
            let e = decode::<crate::frame::ClientFrame>(Encoding::Json, bytes.as_bytes());
            if let Err(e) = e {
                assert!(!e.to_string().contains("unknown variant"), "{t}: {e}");
            }
        }
    }
    use crate::frame::*;
    use crate::ids::*;
    use crate::ErrorCode;

    fn sample_frames() -> Vec<ServerFrame> {
        vec![
            ServerFrame::Event(Event {
                room: RoomId::from("r_abc"),
                epoch: 7,
                seq: u64::from(u32::MAX) + 5,
                ts: 1_700_000_000_000,
                author: UserId::from("alice@acme.example"),
                body: EventBody::Message {
                    client_msg_id: "c1".into(),
                    text: "héllo 👋".into(),
                    attachments: vec![],
                    mentions: vec![],
                    recalled: false,
                },
            }),
            ServerFrame::Error {
                id: None,
                code: ErrorCode::BadFrame,
                message: "x".into(),
            },
            ServerFrame::Reset {
                room: RoomId::from("r"),
                epoch: 1,
                head: 2,
            },
        ]
    }

    #[test]
    fn both_encodings_round_trip() {
        for enc in [Encoding::MsgPack, Encoding::Json] {
            for f in sample_frames() {
                let bytes = encode(enc, &f).expect("encode");
                let back: ServerFrame = decode(enc, &bytes).expect("decode");
                assert_eq!(back, f, "{enc:?}");
            }
        }
    }

    #[test]
    fn client_frames_use_defaults() {
        let f: ClientFrame = decode(
            Encoding::Json,
            br#"{"type":"create_group","id":3,"name":"x"}"#,
        )
        .expect("ok");
        match f {
            ClientFrame::CreateGroup {
                add_self_as_member,
                members,
                features,
                ..
            } => {
                assert!(add_self_as_member);
                assert!(members.is_empty());
                assert!(features.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_error_codes_decode_as_unknown() {
        let f: ServerFrame = decode(
            Encoding::Json,
            br#"{"type":"error","id":1,"code":"brand_new","message":"m"}"#,
        )
        .expect("ok");
        assert!(matches!(
            f,
            ServerFrame::Error {
                code: ErrorCode::Unknown,
                ..
            }
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for enc in [Encoding::MsgPack, Encoding::Json] {
            for junk in [
                &b""[..],
                b"\xc1",
                b"\x91\x01",
                b"{",
                b"\xde\xff\xff",
                b"null",
            ] {
                assert!(decode::<ClientFrame>(enc, junk).is_err());
            }
        }
    }

    #[test]
    fn depth_bombs_are_refused_on_a_small_stack() {
        // 100,000 nested one-element arrays, then the same as a map value; decoded on a 2 MiB
        // stack like tokio's workers.
        let mut bomb = vec![0x91u8; 100_000];
        bomb.push(0x01);
        let mut in_map = b"\x82\xa4type\xa4ping\xa2id".to_vec();
        in_map.extend_from_slice(&bomb);
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                (
                    decode::<ClientFrame>(Encoding::MsgPack, &bomb).is_err(),
                    decode::<ClientFrame>(Encoding::MsgPack, &in_map).is_err(),
                    decode::<ClientFrame>(Encoding::Json, &[b'['; 100_000]).is_err(),
                )
            })
            .expect("thread");
        assert_eq!(
            handle.join().expect("no stack overflow"),
            (true, true, true)
        );
        // Frames within the limit still decode.
        let ok = encode(Encoding::MsgPack, &ClientFrame::Ping { id: 3 }).expect("enc");
        assert!(decode::<ClientFrame>(Encoding::MsgPack, &ok).is_ok());
    }

    #[test]
    fn request_id_is_salvaged_from_unknown_types() {
        let bytes = br#"{"type":"nope","id":42}"#;
        assert!(decode::<ClientFrame>(Encoding::Json, bytes).is_err());
        assert_eq!(salvage_request_id(Encoding::Json, bytes), Some(42));
    }
}
