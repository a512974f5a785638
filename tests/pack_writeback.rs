//! A pack larger than its background-sync step syncs the new file while writing it,
//! and a background sync that fails fails the pack before the switch, leaving the
//! journal as it was (the kernel reports a failed writeback to one sync only, so the
//! final sync would not say it again).

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use durus::journal::io::{FileIo, MemFile};
use durus::journal::{Journal, JournalOptions, PackOptions};
use durus::record::{CommitRequest, Oid, Record};
use durus::Error;

/// A file that notes its length at each sync and fails the `fail_at`th.
struct CountedSyncs {
    file: MemFile,
    synced_at: Arc<Mutex<Vec<u64>>>,
    fail_at: usize,
}

impl FileIo for CountedSyncs {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut at = self.synced_at.lock().unwrap();
        at.push(self.file.len()?);
        if at.len() == self.fail_at {
            return Err(io::Error::other("injected writeback failure"));
        }
        self.file.sync_data()
    }
}

/// A journal of about 48 MiB of live records, all reachable from the root.
fn big_journal() -> (Journal, MemFile, Vec<Oid>) {
    let file = MemFile::new();
    let j = Journal::open_io(Box::new(file.clone()), JournalOptions::default()).unwrap();
    let oids = j.new_oids(12_000).unwrap();
    for chunk in oids.chunks(1_000) {
        let req = CommitRequest {
            snapshot: j.last_tid().unwrap(),
            records: chunk
                .iter()
                .map(|&o| Record::new(o, vec![(o.0 % 251) as u8; 4096], vec![]))
                .collect(),
            ..Default::default()
        };
        j.commit(&req).unwrap();
    }
    let root = CommitRequest {
        snapshot: j.last_tid().unwrap(),
        records: vec![Record::new(Oid::ROOT, b"root".to_vec(), oids.clone())],
        ..Default::default()
    };
    j.commit(&root).unwrap();
    (j, file, oids)
}

/// Packs `j` into a new file whose `fail_at`th sync fails; returns the result, the
/// file's length at each sync and its length at the end.
fn pack_into(j: &Journal, fail_at: usize) -> (durus::Result<durus::journal::PackReport>, Vec<u64>, u64) {
    let synced_at = Arc::new(Mutex::new(Vec::new()));
    let file = MemFile::new();
    let out = CountedSyncs {
        file: file.clone(),
        synced_at: synced_at.clone(),
        fail_at,
    };
    let r = j.pack_into(
        Arc::new(out),
        &PackOptions::default(),
        &AtomicBool::new(false),
        &mut || Ok(()),
    );
    let at = synced_at.lock().unwrap().clone();
    (r, at, file.len().unwrap())
}

#[test]
fn a_failed_background_sync_fails_the_pack_and_changes_nothing() {
    let (j, file, oids) = big_journal();
    let before = file.to_bytes();
    let value = |o: Oid| vec![(o.0 % 251) as u8; 4096];
    let (r, _, _) = pack_into(&j, 1);
    match r {
        Err(Error::Io(e)) => assert!(e.to_string().contains("in the background"), "{e}"),
        other => panic!("expected the background sync's failure, got {other:?}"),
    }
    assert_eq!(file.to_bytes(), before, "a failed pack leaves the journal alone");
    assert_eq!(j.load(oids[7]).unwrap().record.data, value(oids[7]));

    // The same pack on a healthy file syncs while it is still writing (nothing
    // commits meanwhile), before its final sync.
    let (r, synced_at, end) = pack_into(&j, 0);
    let report = r.unwrap();
    assert_eq!(report.objects, 12_001);
    assert!(
        synced_at.iter().any(|&at| at < end),
        "synced at {synced_at:?} of {end} bytes: none in the background"
    );
    assert_eq!(j.load(oids[11_999]).unwrap().record.data, value(oids[11_999]));
}
