//! Every client frame the server reads in JSON goes through this decoder; it must never panic,
//! hang or overflow a tokio worker's 2 MiB stack, whatever the bytes.
#![no_main]

use crossroom_protocol::{codec::salvage_request_id, decode, ClientFrame, Encoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let _ = decode::<ClientFrame>(Encoding::Json, &data);
            let _ = salvage_request_id(Encoding::Json, &data);
        })
        .expect("thread")
        .join()
        .expect("no panic");
});
