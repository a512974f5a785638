//! The journal format's small decoders (file header, block header, checkpoint slot,
//! record entry, checkpoint shape, filler) on arbitrary bytes, each checked against the
//! layout and for round trips; the first byte chooses the decoder and flags (see
//! `durus_fuzz::check_format_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: durus_fuzz::CountingAlloc = durus_fuzz::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    durus_fuzz::check_format_decode(data);
});
