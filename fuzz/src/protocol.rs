//! The storage server's wire decoders (protocol v1, Durus's, and v2, durus's own) on
//! arbitrary bytes: the server's request decoders and the client's reply decoders.

use durus::protocol::{v1, v2};

use crate::with_alloc_bound;

/// Which decoder an input goes to (its first byte, modulo this many).
pub const PROTOCOL_TARGETS: u8 = 4;

/// The frame limit the decoders are given (small, so that limit checks are reached).
const MAX_FRAME: usize = 1 << 16;

/// Allocation bound for an input of `len` bytes: decoded replies hold a small struct
/// per entry of at least one byte, and records copy their bytes.
pub fn protocol_bound(len: usize) -> usize {
    200 * len + (64 << 10)
}

/// Every decoder yields a value or an error, never a panic, and what decodes encodes
/// back: a request to the same bytes, a reply to bytes that decode to the same reply.
pub fn check_protocol_decode(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    with_alloc_bound(data.len(), protocol_bound(data.len()), || match selector % PROTOCOL_TARGETS {
        0 => v1_requests(rest),
        1 => v1_commit_body(rest),
        2 => v2_requests(rest),
        _ => v2_replies(rest),
    });
}

fn v1_requests(mut buf: &[u8]) {
    while let Ok(Some((_, used))) = v1::decode_request(buf, MAX_FRAME) {
        assert!(used > 0 && used <= buf.len(), "v1 request used {used} of {}", buf.len());
        buf = &buf[used..];
    }
}

fn v1_commit_body(buf: &[u8]) {
    if let Ok(Some(n)) = v1::decode_commit_length(buf, MAX_FRAME) {
        assert!(n <= MAX_FRAME);
    }
    if let Ok(records) = v1::decode_commit_body(buf) {
        let mut again = Vec::new();
        v1::encode_commit_body(&records, &mut again).expect("re-encode a commit body");
        assert!(again[4..] == *buf, "a decoded commit body re-encodes differently");
    }
}

fn v2_requests(mut buf: &[u8]) {
    while let Ok(Some((frame, used))) = v2::split_frame(buf, MAX_FRAME) {
        assert!(used >= v2::HEADER && used <= buf.len());
        if let Ok(req) = v2::decode_request(&frame) {
            let mut again = Vec::new();
            v2::encode_request(frame.id, &req, &mut again).expect("re-encode a request");
            assert!(again == buf[..used], "a decoded request re-encodes differently");
        }
        buf = &buf[used..];
    }
}

fn v2_replies(mut buf: &[u8]) {
    while let Ok(Some((frame, used))) = v2::split_frame(buf, MAX_FRAME) {
        if let Ok(reply) = v2::decode_reply(&frame) {
            let mut again = Vec::new();
            v2::encode_reply(frame.id, &reply, &mut again).expect("re-encode a reply");
            let (f2, _) = v2::split_frame(&again, usize::MAX)
                .expect("split a re-encoded reply")
                .expect("a whole frame");
            let back = v2::decode_reply(&f2).expect("decode a re-encoded reply");
            assert_eq!(format!("{back:?}"), format!("{reply:?}"), "a reply changed on re-encoding");
        }
        buf = &buf[used..];
    }
}
