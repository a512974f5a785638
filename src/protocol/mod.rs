//! The storage server's wire protocols, as pure encoders and decoders: no I/O, no
//! async, nothing shared. The server and [`ClientStorage`](crate::client::ClientStorage)
//! do the reading and writing; the fuzz targets feed these functions arbitrary bytes.
//!
//! - [`v1`]: the Durus 4.3 protocol, byte-compatible with Python Durus clients.
//! - [`v2`]: durus's own framed, pipelined protocol for Rust clients, negotiated by
//!   the same handshake. `docs/PROTOCOL.md` documents both.
//!
//! Every decoder either returns a value or [`Error::Protocol`](crate::Error::Protocol);
//! none panics, and none allocates more than the bytes it was given could hold.

pub mod v1;
pub mod v2;
mod v2_error;
mod v2_pack;
mod wire;

/// Durus's default port, kept so that existing clients and scripts need no change.
pub const DEFAULT_PORT: u16 = 2972;

/// The Durus protocol version (`V` handshake).
pub const PROTOCOL_V1: u32 = 1;

/// durus's own protocol version.
pub const PROTOCOL_V2: u32 = 2;

/// Status byte: the request succeeded (Durus `STATUS_OKAY`).
pub const STATUS_OKAY: u8 = b'O';

/// Status byte: no such oid (Durus `STATUS_KEYERROR`).
pub const STATUS_KEYERROR: u8 = b'K';

/// Status byte: invalid, a conflict (Durus `STATUS_INVALID`).
pub const STATUS_INVALID: u8 = b'I';

#[cfg(test)]
mod tests {
    use super::v2::{self, Reply, Request};
    use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Record, Tid, TxInfo};
    use crate::storage::Change;
    use crate::Error;

    fn loaded(oid: u64, tid: u64, len: usize) -> Loaded {
        Loaded {
            record: Record::new(Oid(oid), vec![oid as u8; len], vec![Oid(oid + 1)]),
            tid: Tid(tid),
        }
    }

    fn requests() -> Vec<Request> {
        vec![
            Request::Load {
                oid: Oid(3),
                snapshot: None,
            },
            Request::Load {
                oid: Oid(3),
                snapshot: Some(Tid(7)),
            },
            Request::LoadMany {
                oids: vec![Oid(1), Oid(2)],
                snapshot: Some(Tid(0)),
            },
            Request::NewOids { n: 5 },
            Request::Commit {
                req: CommitRequest {
                    snapshot: Tid(4),
                    records: vec![loaded(1, 0, 0).record, loaded(2, 0, 100).record],
                    reads: vec![Oid(9)],
                    rebased: vec![(Oid(2), Tid(5))],
                },
                want_records: true,
            },
            Request::ChangesSince { since: Tid(2) },
            Request::LastTid,
            Request::Transactions {
                after: Tid(1),
                max: 10,
            },
            Request::TidAtTime { timestamp: 99 },
            Request::ScanNext { cursor: 0, max: 64 },
            Request::ScanClose { cursor: 3 },
            Request::Subscribe,
            Request::Pack {
                keep: crate::journal::Keep::Nothing,
                dry_run: true,
                force: false,
            },
            Request::Pack {
                keep: crate::journal::Keep::Transactions(7),
                dry_run: false,
                force: true,
            },
            Request::Pack {
                keep: crate::journal::Keep::Duration(std::time::Duration::from_micros(1_500)),
                dry_run: false,
                force: false,
            },
            Request::Pin { snapshot: Tid(5) },
            Request::Unpin { snapshot: Tid(5) },
        ]
    }

    #[test]
    fn every_request_round_trips_and_every_prefix_is_incomplete() {
        for (i, r) in requests().into_iter().enumerate() {
            let mut out = Vec::new();
            v2::encode_request(i as u32 + 1, &r, &mut out).unwrap();
            let (f, used) = v2::split_frame(&out, 1 << 20).unwrap().unwrap();
            assert_eq!(used, out.len());
            assert_eq!(f.id, i as u32 + 1);
            assert_eq!(v2::decode_request(&f).unwrap(), r);
            for cut in 0..out.len() {
                assert!(v2::split_frame(&out[..cut], 1 << 20).unwrap().is_none());
            }
            // A body cut short inside a valid frame is an error, never a panic.
            for cut in 0..f.body.len() {
                let g = v2::Frame {
                    body: &f.body[..cut],
                    ..f
                };
                let _ = v2::decode_request(&g);
            }
        }
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = vec![
            Reply::Records(vec![Some(loaded(1, 2, 3)), None]),
            Reply::Oids(vec![Oid(4), Oid(5)]),
            Reply::Committed(Committed {
                tid: Tid(8),
                timestamp: 12,
            }),
            Reply::Conflict {
                last: Tid(9),
                oids: vec![Oid(1)],
                records: vec![loaded(1, 9, 10)],
            },
            Reply::Changes(Changes {
                tid: Tid(3),
                oids: vec![Oid(7)],
            }),
            Reply::Tid(Tid(4)),
            Reply::Transactions {
                txs: vec![TxInfo {
                    tid: Tid(2),
                    timestamp: 5,
                    oids: vec![Oid(1)],
                }],
                more: true,
            },
            Reply::ScanPage {
                cursor: 2,
                done: false,
                records: vec![loaded(0, 1, 0)],
            },
            Reply::Done,
            Reply::Error(Error::NotFound { oid: Oid(6) }),
            Reply::Error(Error::Invalid("no".into())),
            Reply::Error(Error::HistoryGone { oldest: Tid(4) }),
            Reply::Error(Error::DanglingRefs {
                count: 3,
                oids: vec![Oid(7), Oid(9)],
            }),
            Reply::Packed(crate::journal::PackReport {
                dry_run: true,
                history_from: Tid(3),
                objects: 4,
                object_bytes: 5,
                transactions: 6,
                bytes_before: 7,
                bytes_after: 8,
                dangling: 9,
            }),
            Reply::Pushed(Change::Committed {
                tid: Tid(3),
                timestamp: 4,
                oids: vec![Oid(2)],
            }),
            Reply::Pushed(Change::Lagged { resume_after: Tid(8) }),
        ];
        for r in replies {
            let mut out = Vec::new();
            v2::encode_reply(11, &r, &mut out).unwrap();
            let (f, _) = v2::split_frame(&out, 1 << 20).unwrap().unwrap();
            let back = v2::decode_reply(&f).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
    }

    #[test]
    fn lengths_are_checked_before_anything_is_buffered() {
        // A declared length of 4 GiB is refused from its first four bytes.
        assert!(matches!(
            v2::split_frame(&[0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(Error::Protocol { .. })
        ));
        assert!(v2::split_frame(&[0, 0, 0, 2, 1, 0], 1 << 20).is_err());
        // A count that cannot fit in the frame is refused before allocating for it.
        let mut out = Vec::new();
        let start = v2::start_frame(&mut out, v2::kind::LOAD_MANY, 1);
        out.extend_from_slice(&u64::MAX.to_be_bytes());
        out.extend_from_slice(&u32::MAX.to_be_bytes());
        v2::finish_frame(&mut out, start).unwrap();
        let (f, _) = v2::split_frame(&out, 1 << 20).unwrap().unwrap();
        assert!(matches!(v2::decode_request(&f), Err(Error::Protocol { .. })));
    }
}
