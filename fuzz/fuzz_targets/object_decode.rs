//! The object codec (`durus::object::decode`, `peek_type_name`) on arbitrary record
//! data as several persistent types: an error or a value that round-trips; the first
//! byte chooses the type (see `durus_fuzz::check_object_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: durus_fuzz::CountingAlloc = durus_fuzz::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    durus_fuzz::check_object_decode(data);
});
