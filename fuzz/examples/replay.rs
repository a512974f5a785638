//! Replays inputs through a fuzz target's checks without libFuzzer, on stable Rust:
//!
//! ```text
//! cd fuzz && cargo run --example replay -- journal_open artifacts/journal_open/crash-...
//! ```
//!
//! Prints the peak heap growth of each input next to its allocation bound.

#[global_allocator]
static ALLOC: durus_fuzz::CountingAlloc = durus_fuzz::CountingAlloc;

/// A target's check, and its allocation bound for an input length.
type Target = (fn(&[u8]), fn(usize) -> usize);

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: replay TARGET FILE...");
    let (check, bound): Target = match target.as_str() {
        "record_decode" => (durus_fuzz::check_record_decode, durus_fuzz::record_bound),
        "journal_open" => (durus_fuzz::check_journal_open, durus_fuzz::journal_bound),
        "format_decode" => (durus_fuzz::check_format_decode, durus_fuzz::format_bound),
        "object_decode" => (durus_fuzz::check_object_decode, durus_fuzz::object_bound),
        "journal_ops" => (durus_fuzz::check_journal_ops, durus_fuzz::ops_bound),
        "protocol_decode" => (durus_fuzz::check_protocol_decode, durus_fuzz::protocol_bound),
        other => panic!(
            "unknown target {other}; expected record_decode, journal_open, format_decode, \
             object_decode, journal_ops or protocol_decode"
        ),
    };
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    for a in args {
        let p = std::path::PathBuf::from(a);
        if p.is_dir() {
            let mut v: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            v.sort();
            paths.extend(v);
        } else {
            paths.push(p);
        }
    }
    for p in paths {
        let data = std::fs::read(&p).unwrap();
        let ((), grew) = durus_fuzz::with_alloc_bound(data.len(), usize::MAX, || check(&data));
        println!(
            "{}: {} bytes, ok, heap peak +{} bytes (bound {})",
            p.display(),
            data.len(),
            grew,
            bound(data.len())
        );
    }
}
