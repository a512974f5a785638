//! The storage server's wire decoders on arbitrary bytes (the first byte picks v1
//! requests, a v1 commit body, v2 requests or v2 replies): a value or an error, never a
//! panic or an allocation beyond `durus_fuzz::protocol_bound`; what decodes re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: durus_fuzz::CountingAlloc = durus_fuzz::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    durus_fuzz::check_protocol_decode(data);
});
