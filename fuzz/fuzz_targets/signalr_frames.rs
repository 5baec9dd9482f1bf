//! The SignalR frame parser: bytes a hub or a client controls, cut into frames at points
//! the input chooses, through the record framer, the handshake parsers, hub messages and
//! negotiate responses. Input: one byte giving the frame length, then the stream.
#![no_main]

use callgate::outbound::signalr::protocol::{
    Framer, HandshakeRequest, HandshakeResponse, HubMessage, Negotiated,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let _ = Negotiated::parse(stream);
    let mut framer = Framer::new(4096);
    for frame in stream.chunks(usize::from(cut).max(1)) {
        let Ok(records) = framer.push(frame) else {
            framer = Framer::new(4096);
            continue;
        };
        for record in records {
            let _ = HandshakeRequest::parse(&record);
            let _ = HandshakeResponse::parse(&record);
            if let Ok(Some(message)) = HubMessage::parse(&record) {
                // What parses must encode to a record that parses back the same.
                let bytes = message.encode();
                let again = HubMessage::parse(&bytes[..bytes.len() - 1]).expect("re-parses");
                assert_eq!(again, Some(message));
            }
        }
    }
});
