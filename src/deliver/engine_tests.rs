//! The delivery engine alone, through stub transports with scripted answers: how it shares
//! messages between relays, when it takes a relay out, and when it stops.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use tokio::sync::mpsc;

use super::run::{Event, Job, Lane, Observer, RunOutcome, Settings, deliver};
use super::throttle::{Rate, TokenBucket};
use crate::transport::stub::Stub;
use crate::transport::{SendError, Stage, Transport};

/// What the engine reported: relays taken out, with why.
#[derive(Default)]
struct Seen {
    out: Vec<(String, String)>,
    sent: usize,
}

impl Observer for Seen {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::RelayOut { relay, why, .. } => self.out.push(((*relay).to_owned(), (*why).to_owned())),
            Event::Sent { .. } => self.sent += 1,
            _ => {}
        }
    }
}

fn lane(name: &str, weight: u32, stub: &Arc<Stub>, connections: usize) -> Lane {
    Lane {
        name: name.into(),
        weight,
        transports: (0..connections)
            .map(|_| -> Box<dyn Transport> { Box::new(Arc::clone(stub)) })
            .collect(),
        rate: TokenBucket::new(Rate::Unlimited, 1),
        daily_left: None,
    }
}

fn job(i: usize) -> Job {
    let email = format!("reader{i}@example.org");
    Job {
        envelope: Envelope::new(
            Some("bounces@lists.example.org".parse().unwrap()),
            vec![email.parse().unwrap()],
        )
        .unwrap(),
        email,
        line: i as u64 + 2,
        message_id: format!("<{i}@test>"),
        bytes: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        attempts: 0,
        throttled: 0,
        resent_after_crash: false,
    }
}

/// Runs `count` messages through `lanes`; a relay taken out rests 30 s, longer than a run.
fn run(lanes: Vec<Lane>, count: usize) -> (RunOutcome, Seen) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (tx, rx) = mpsc::channel(count.max(1));
        for i in 0..count {
            tx.send(job(i)).await.unwrap();
        }
        drop(tx);
        let settings = Settings {
            retries: 2,
            retry_delay: Duration::from_millis(10),
            batch_size: None,
            batch_pause: Duration::ZERO,
            max_consecutive_failures: 1000,
        };
        let mut seen = Seen::default();
        let outcome = deliver(
            rx,
            lanes,
            TokenBucket::new(Rate::Unlimited, 1),
            &settings,
            &mut seen,
            std::future::pending(),
        )
        .await;
        (outcome, seen)
    })
}

fn accepted(stub: &Stub) -> usize {
    stub.accepted.lock().unwrap().len()
}

#[test]
fn shares_follow_the_weights() {
    let (a, b) = (Arc::new(Stub::accepting()), Arc::new(Stub::accepting()));
    let (outcome, _) = run(vec![lane("a", 1, &a, 2), lane("b", 3, &b, 2)], 400);
    assert_eq!(outcome.sent, 400);
    let share = accepted(&a) as f64 / 400.0;
    assert!((0.2..=0.3).contains(&share), "relay a took {share} of the messages");
}

#[test]
fn three_421_replies_take_a_relay_out_and_the_others_take_its_messages() {
    let busy = Arc::new(Stub::new(|_, _| {
        Err(SendError::refused(
            false,
            Stage::Recipient,
            Some(421),
            "421 4.7.0 try again later".into(),
            None,
        ))
    }));
    let good = Arc::new(Stub::accepting());
    let (outcome, seen) = run(vec![lane("busy", 1, &busy, 1), lane("good", 1, &good, 1)], 50);
    assert_eq!((outcome.sent, outcome.failed), (50, 0));
    assert_eq!(accepted(&good), 50, "every message went through the other relay");
    assert_eq!(
        seen.out.first().map(|(r, _)| r.as_str()),
        Some("busy"),
        "{:?}",
        seen.out
    );
    assert!(
        seen.out[0].1.starts_with("3 failures of its own in a row"),
        "{:?}",
        seen.out
    );
}

#[test]
fn connection_faults_take_a_relay_out_too_and_every_relay_out_stops_with_each_reason() {
    let down = |why: &'static str| Arc::new(Stub::new(move |_, _| Err(SendError::connection(why))));
    let (a, b) = (down("connection refused"), down("no reply within 30s"));
    let (outcome, seen) = run(vec![lane("a", 1, &a, 1), lane("b", 1, &b, 1)], 20);
    assert_eq!(outcome.sent, 0);
    let stopped = outcome.stopped.unwrap_or_default();
    assert!(
        stopped.contains("every relay is out of the rotation")
            && stopped.contains("connection refused")
            && stopped.contains("no reply within 30s"),
        "{stopped}"
    );
    assert_eq!(outcome.failed, 0, "nothing is counted against the readers: {stopped}");
    assert_eq!(seen.out.len(), 2);
}

#[test]
fn a_refusal_of_the_sender_takes_the_relay_out_at_once_and_fails_no_reader() {
    let refusing = Arc::new(Stub::new(|_, _| {
        Err(SendError::refused(
            true,
            Stage::Sender,
            Some(553),
            "553 5.7.1 sender rejected".into(),
            None,
        ))
    }));
    let good = Arc::new(Stub::accepting());
    let (outcome, seen) = run(vec![lane("refusing", 1, &refusing, 1), lane("good", 1, &good, 1)], 30);
    assert_eq!((outcome.sent, outcome.failed), (30, 0));
    assert!(seen.out[0].1.contains("the relay refused the sender"), "{:?}", seen.out);
}

#[test]
fn a_mailbox_that_does_not_exist_fails_that_reader_only() {
    let stub = Arc::new(Stub::new(|rcpt, _| {
        if rcpt == "reader3@example.org" {
            Err(SendError::refused(
                true,
                Stage::Recipient,
                Some(550),
                "550 5.1.1 <reader3@example.org>: User unknown".into(),
                Some(rcpt),
            ))
        } else {
            Ok(())
        }
    }));
    let (outcome, seen) = run(vec![lane("only", 1, &stub, 2)], 10);
    assert_eq!((outcome.sent, outcome.failed), (9, 1));
    assert!(seen.out.is_empty());
}
