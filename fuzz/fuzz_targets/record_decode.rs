//! `Record::decode` on arbitrary bytes: an error, or a record that re-encodes to exactly
//! the input; never a panic or an allocation beyond `durus_fuzz::record_bound`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: durus_fuzz::CountingAlloc = durus_fuzz::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    durus_fuzz::check_record_decode(data);
});
