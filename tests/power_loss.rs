//! Power loss, not just process death (invariants 1 and 2): the scripted run is done on
//! a simulated file that records, before every mutating file call, what power loss at
//! that moment could leave: the bytes made durable by the last completed sync plus any
//! subset of the writes since, torn at 512-byte sectors. Every such image must reopen
//! to a prefix of the transactions that holds every one acknowledged by then, verify
//! clean, and take new commits.

mod common;

use common::script::{self, check_image, each_image, Outcome, Step};
use common::Rng;
use durus::journal::sim::SimFile;
use durus::journal::Journal;

#[test]
fn every_crash_image_opens_to_a_prefix_holding_every_acknowledged_commit() {
    let seed = std::env::var("DURUS_POWER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0fd1_5c00);
    let mut rng = Rng::with_seed(seed);
    let (start, before) = script::starting_file();
    let sim = SimFile::from_bytes(start);
    // What had been acknowledged at each moment: (last acknowledged tid, oids handed
    // out); crash points are tagged with an index into this.
    let mut acked = vec![(before.acked(), before.handed_out)];
    sim.set_tag(0);
    sim.record_crash_points(true);
    let j = Journal::open_io(Box::new(sim.clone()), script::options()).unwrap();
    let mut steps = script::steps();
    steps.push(Step::Close);
    let out: Outcome = script::run(&j, &steps, before, |o| {
        acked.push((o.acked(), o.handed_out));
        sim.set_tag(acked.len() as u64 - 1);
    })
    .unwrap();
    assert!(out.failed_at.is_none(), "{:?}", out.failed_at);
    let mut points = sim.take_crash_points();
    points.push(sim.crash_point());

    let (mut images, mut torn_pieces, mut opened_later) = (0u64, 0u64, 0u64);
    for p in &points {
        let n = p.choices();
        let ctx = |what: &str| {
            format!(
                "crash before call {} ({n} unsynced pieces), {what} (seed {seed})",
                p.op
            )
        };
        let (tid, handed) = acked[p.tag as usize];
        let check = |img: Vec<u8>, what: &str| {
            let t = check_image(img, &out, tid, handed).unwrap_or_else(|e| panic!("{}: {e}", ctx(what)));
            images += 1;
            if t > tid {
                opened_later += 1;
            }
        };
        torn_pieces += each_image(p, &mut rng, check);
    }
    assert!(points.len() >= 40, "only {} crash points", points.len());
    println!(
        "power loss: {} crash points, {images} crash images opened and checked \
         ({opened_later} held transactions past the last acknowledged one), \
         {torn_pieces} sector pieces chosen (seed {seed})",
        points.len()
    );
}
