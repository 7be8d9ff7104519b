//! Replays the fuzzers' corpus (`protocol/fuzz/corpus/`) through the decoders on a 2 MiB stack,
//! as tokio's workers have: every input the fuzzers ever kept must still decode or fail cleanly.
//! The fuzzing itself runs under `cargo fuzz` (see `protocol/fuzz/README.md`).

use crossroom_protocol::codec::salvage_request_id;
use crossroom_protocol::{decode, ClientFrame, Encoding};
use std::path::Path;

fn replay(target: &str, encoding: Encoding) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .collect();
    let n = inputs.len();
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            for data in inputs {
                let _ = decode::<ClientFrame>(encoding, &data);
                let _ = salvage_request_id(encoding, &data);
            }
        })
        .expect("thread")
        .join()
        .expect("no input panics or overflows the stack");
    n
}

#[test]
fn msgpack_corpus_replays_cleanly() {
    assert!(replay("decode_msgpack", Encoding::MsgPack) > 0);
}

#[test]
fn json_corpus_replays_cleanly() {
    assert!(replay("decode_json", Encoding::Json) > 0);
}
