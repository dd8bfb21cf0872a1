//! What the ledger costs per message: the `sending` row and its commit before transmission,
//! and the `sent` row after, as a real send records them (on disk, WAL).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lettre::address::Envelope;
use newsletter::deliver::run::{Event, Job, Observer};
use newsletter::ledger::Ledger;
use newsletter::send::recorder::Recorder;

fn job(i: u64) -> Job {
    let to = format!("reader{i}@example.org").parse().expect("valid address");
    Job {
        email: format!("reader{i}@example.org"),
        line: i + 2,
        message_id: format!("<bench.{i}@openinfra.dev>"),
        envelope: Envelope::new(
            Some("newsletter@openinfra.dev".parse().expect("valid address")),
            vec![to],
        )
        .expect("valid envelope"),
        bytes: Vec::new(),
        attempts: 1,
        throttled: 0,
        resent_after_crash: false,
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut ledger = Ledger::open(&dir.path().join("newsletter.db")).expect("the ledger opens");
    // As a send has it: its own records relaxed to synchronous=NORMAL.
    ledger.relax_durability().expect("the pragma applies");
    let mut recorder = Recorder::new(&mut ledger, "bench", None);
    let mut i = 0u64;
    c.bench_function("ledger: record one message (sending, commit, sent)", |b| {
        b.iter(|| {
            i += 1;
            let job = job(i);
            recorder.event(&Event::Sending {
                job: &job,
                relay: "bench",
            });
            recorder.checkpoint().expect("commits");
            recorder.event(&Event::Sent {
                job: black_box(&job),
                reply: "250 2.0.0 Ok: queued".into(),
            });
        })
    });
}

criterion_group!(ledger, benches);
criterion_main!(ledger);
