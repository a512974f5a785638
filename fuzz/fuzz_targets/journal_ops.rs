//! A sequence of operations on a journal over an in-memory file (commits, loads,
//! snapshot loads, reopens, checkpoints, cuts of the tail), every answer compared with a
//! model (see `durus_fuzz::check_journal_ops`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: durus_fuzz::CountingAlloc = durus_fuzz::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    durus_fuzz::check_journal_ops(data);
});
