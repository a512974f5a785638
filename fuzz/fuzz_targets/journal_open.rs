//! Arbitrary bytes as a whole journal file, opened read-only and writable and used:
//! errors are fine; panics, hangs and allocations beyond `durus_fuzz::journal_bound`
//! are not. The first input byte holds flags (see `durus_fuzz::journal_file_of`): bit 0
//! puts a valid file header in front of the rest, bit 1 re-seals every checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: durus_fuzz::CountingAlloc = durus_fuzz::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    durus_fuzz::check_journal_open(data);
});
