//! In-process figures: composing the July issue (Markdown to HTML and text, once per issue)
//! and personalizing it for one recipient (per recipient, the hot path of a send).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use newsletter::config::Config;
use newsletter::dkim::{self, Signer};
use newsletter::issue::Issue;
use newsletter::personalize::Personalizer;
use newsletter::recipients::Recipient;
use newsletter::unsubscribe::Secret;

fn benches(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config {
        layouts: root.join("layouts"),
        ..Config::default()
    };
    let issue = Issue::load(&root.join("newsletters/2025-07.md")).expect("the July issue loads");
    let mut group = c.benchmark_group("july");

    group.bench_function("compose (markdown to html and text)", |b| {
        b.iter(|| newsletter::compose(black_box(&issue), &config).expect("composes"))
    });

    let rendered = newsletter::compose(&issue, &config).expect("composes");
    let layout = newsletter::layout::Layout::load(None, &config.layouts).expect("layout loads");
    let origin = issue.site_origin();
    let mut warnings = Vec::new();
    let sections = newsletter::sections::split(&issue, &layout.registry, origin.as_deref(), &mut warnings);
    group.bench_function("layout, mrml and text (sections to html and text)", |b| {
        b.iter(|| {
            newsletter::compile::Editions::new(&issue, black_box(&sections), &layout, &config, Vec::new())
                .and_then(|e| e.compile(&newsletter::choice::Choice::Everything))
                .expect("compiles")
        })
    });

    // The same MJML that `preview` writes to email.mjml, compiled as in compile.rs: the figure
    // scripts/bench sets against node's mjml.
    let options = mrml::prelude::render::RenderOptions {
        disable_comments: true,
        ..Default::default()
    };
    group.bench_function("mrml only (MJML to HTML)", |b| {
        b.iter(|| {
            mrml::parse(black_box(&rendered.mjml))
                .expect("parses")
                .element
                .render(&options)
                .expect("renders")
        })
    });

    let personalizer = Personalizer::new(&rendered, &config, Secret::new("bench")).expect("templates parse");
    let recipient = Recipient::sample();
    group.bench_function("personalize one recipient (MIME bytes)", |b| {
        b.iter(|| {
            personalizer
                .mime(black_box(&recipient), false)
                .expect("personalizes")
                .bytes
        })
    });

    // The same with the HTML's links pointing at serve (analytics.clicks): rewritten once per
    // issue, so a message only carries longer links.
    let table = newsletter::clicks::LinkTable::new(&sections, &rendered);
    let clicks = newsletter::clicks::Clicks::new(&config, &rendered.slug, table, &Secret::new("bench"))
        .expect("clicks are on by default");
    let counted = Personalizer::new(&rendered, &config, Secret::new("bench"))
        .and_then(|p| p.with_clicks(std::sync::Arc::new(clicks)))
        .expect("templates parse");
    group.bench_function("personalize one recipient, links counted (MIME bytes)", |b| {
        b.iter(|| counted.mime(black_box(&recipient), false).expect("personalizes").bytes)
    });

    // The same with DKIM's body hash made from the splice's pieces, as a signed send makes it.
    group.bench_function("a signed send's personalization (MIME bytes and DKIM body hash)", |b| {
        b.iter(|| {
            personalizer
                .mime(black_box(&recipient), true)
                .expect("personalizes")
                .body_hash
        })
    });

    // Signing one personalized message with both keys: the other per-recipient cost of a
    // signed send.
    let key = |var: &str| {
        let file = match var {
            dkim::KEY_VAR => "dkim-test-rsa.pem",
            dkim::ED25519_KEY_VAR => "dkim-test-ed25519.pem",
            _ => return None,
        };
        std::fs::read_to_string(root.join("tests/fixtures").join(file)).ok()
    };
    let mut signed = config.clone();
    signed.dkim.selector = Some("rsa2026".into());
    signed.dkim.ed25519_selector = Some("ed2026".into());
    let signer = Signer::from_config(&signed, key)
        .expect("the test keys load")
        .expect("signing is configured");
    let bytes = personalizer.mime(&recipient, false).expect("personalizes").bytes;
    group.bench_function("dkim sign (rsa-sha256 and ed25519-sha256)", |b| {
        b.iter(|| signer.sign(black_box(&bytes)))
    });
    group.finish();
    choices(c, &issue, &config);
    rsa(c, root);
}

/// One RSA-2048 PKCS#1 v1.5 SHA-256 signature of a DKIM header block's size, with the DKIM
/// test key: ring's and aws-lc-rs's (which signs for DKIM). scripts/bench sets them beside
/// `openssl speed rsa2048` on the same machine.
fn rsa(c: &mut Criterion, root: &Path) {
    use base64::Engine;
    let pem = std::fs::read_to_string(root.join("tests/fixtures/dkim-test-rsa.pem")).expect("the test key");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).expect("base64");
    let data = vec![0x5a_u8; 600];
    let ring_key = ring::signature::RsaKeyPair::from_der(&der).expect("ring reads the key");
    let aws_key = aws_lc_rs::signature::RsaKeyPair::from_der(&der).expect("aws-lc-rs reads the key");
    let mut group = c.benchmark_group("rsa-2048");
    group.bench_function("sign, ring", |b| {
        let rng = ring::rand::SystemRandom::new();
        let mut sig = vec![0; ring_key.public().modulus_len()];
        b.iter(|| ring_key.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, black_box(&data), &mut sig))
    });
    group.bench_function("sign, aws-lc-rs", |b| {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0; aws_key.public_modulus_len()];
        b.iter(|| {
            aws_key.sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                black_box(&data),
                &mut sig,
            )
        })
    });
    group.finish();
}

/// A send's composing work (personalizing and building every message, the editions compiled
/// ahead as a send does while it reaches the relays) for 20,000 readers of the whole issue, and for 20,000 spread over every
/// combination of the five projects: scripts/bench reports the ratio.
fn choices(c: &mut Criterion, issue: &Issue, config: &Config) {
    use newsletter::choice::Choice;
    use newsletter::send::queue::Composer;
    const READERS: usize = 20_000;
    let prepared = newsletter::prepare(issue, config).expect("prepares");
    let editions = prepared.editions(issue, config).expect("styles");
    let whole = editions.compile(&Choice::Everything).expect("compiles");
    let ids: Vec<String> = editions.registry().projects.iter().map(|p| p.id.clone()).collect();
    let reader = |i: usize, spread: bool| {
        let mut r = Recipient::sample();
        r.email = format!("reader{i}@example.org");
        // Every subset of the projects in turn (the empty one is everything).
        let mask = if spread { i % (1 << ids.len()) } else { 0 };
        let chosen: Vec<&str> = ids
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1 << bit) != 0)
            .map(|(_, id)| id.as_str())
            .collect();
        r.fields.insert("projects".into(), chosen.join(";"));
        r
    };
    // One edition's per-issue work, in its two steps: the layout and mrml, then the
    // personalizer's templates and splice.
    let mut group = c.benchmark_group("one edition");
    let kata_zuul = Choice::parse("kata-containers;zuul", editions.registry()).0;
    group.bench_function("compile (layout, mrml, text)", |b| {
        b.iter(|| editions.compile(black_box(&kata_zuul)).expect("compiles"))
    });
    let edition = editions.compile(&kata_zuul).expect("compiles");
    let personalizer = Personalizer::new(&whole, config, Secret::new("bench")).expect("templates parse");
    group.bench_function("personalizer (templates, splice)", |b| {
        b.iter(|| personalizer.edition(black_box(&edition)).expect("parses"))
    });
    group.finish();
    let mut group = c.benchmark_group("send of 20,000");
    group.sample_size(10);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (name, spread) in [("readers, one edition", false), ("readers over every choice", true)] {
        let readers: Vec<Recipient> = (0..READERS).map(|i| reader(i, spread)).collect();
        // What the plan hands the send: the list's distinct `projects` values.
        let mut values: Vec<String> = readers
            .iter()
            .filter_map(|r| r.fields.get("projects").cloned())
            .collect();
        values.sort();
        values.dedup();
        let composer = || Composer {
            personalizer: std::sync::Arc::new(
                Personalizer::new(&whole, config, Secret::new("bench")).expect("templates parse"),
            ),
            editions: Some(&editions),
            made: Default::default(),
            dkim: None,
            return_path: "bounces@openinfra.dev".parse().expect("an address"),
            verp: None,
        };
        // As a send does: the editions the plan met are compiled on every core while the
        // relays are reached, before the first message; the composing then finds them made.
        // The list's readers in the order a send takes them: windows grouped by choice.
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let made = composer();
                    made.compile_ahead(&values, cores);
                    (made, readers.clone())
                },
                |(made, list)| {
                    newsletter::choice::grouped(list.into_iter().map(|r| (r, ())))
                        .map(|(r, ())| made.job(black_box(&r), false).expect("composes").bytes.len())
                        .sum::<usize>()
                },
                criterion::BatchSize::PerIteration,
            )
        });
        if spread {
            // What that costs, apart: every edition of the list, on every core.
            group.bench_function("editions compiled ahead, every core", |b| {
                b.iter_batched(
                    composer,
                    |made| made.compile_ahead(&values, cores),
                    criterion::BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(render, benches);
criterion_main!(render);
