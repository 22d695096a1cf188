//! The disk buffer's batch codec (`hostflow::buffer_codec`): encode and
//! decode of one 1 024-event batch, uncompressed (the codec disk edges
//! use) and zstd (as the spool writes its files), for `process_sample`
//! events from the generator's deterministic stream and for a mix of the
//! security kinds (`security_samples`, half with a process context).
//!
//! Beside them, the spool's encoder and the replay decoder alone on the
//! same events (record batches in memory, no IPC), so the codec's own
//! cost is the difference.
//!
//! `cargo bench --bench buffer_codec` — criterion's figures (events/s),
//! then the encoded bytes per event of each batch.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use hostflow::buffer_codec::ArrowBatchCodec;
use pipeline::batch_codec::BatchCodec;
use pipeline::event::columns::security_samples;
use pipeline::event::{Batch, EventKind};
use sinks::arrow_spool::encode;
use sources::generator::EventStream;
use sources::replay::decode_batch;

const EVENTS: usize = 1024;

fn process_samples() -> Batch {
    let mut stream = EventStream::new(42, vec![(EventKind::ProcessSample, 1)], None);
    (0..EVENTS).map(|_| stream.next_event(0)).collect()
}

fn security_mix() -> Batch {
    (0..).flat_map(|i| security_samples(i * 100)).take(EVENTS).collect()
}

fn bench(c: &mut Criterion) {
    let batches = [("process_sample", process_samples()), ("security_mix", security_mix())];
    let codecs = [("plain", ArrowBatchCodec::new()), ("zstd", ArrowBatchCodec::zstd().expect("zstd"))];
    let mut sizes = Vec::new();
    let mut group = c.benchmark_group("buffer_codec_1024");
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (name, batch) in &batches {
        for (variant, codec) in &codecs {
            let mut encoded = Vec::new();
            codec.encode(batch, &mut encoded).expect("encode");
            assert_eq!(&codec.decode(&encoded).expect("decode"), batch, "{name} round-trips");
            sizes.push(format!("{name} {variant}: {} bytes/event", encoded.len() / EVENTS));
            group.bench_function(format!("encode_{name}_{variant}"), |b| {
                let mut out = Vec::with_capacity(encoded.len());
                b.iter(|| {
                    out.clear();
                    codec.encode(black_box(batch), &mut out).expect("encode");
                })
            });
            group.bench_function(format!("decode_{name}_{variant}"), |b| {
                b.iter(|| codec.decode(black_box(&encoded)).expect("decode"))
            });
        }
        // The spool's own encoder and decoder on the same events, without
        // IPC or the order section: what the codec adds is the difference.
        let mut kinds: Vec<EventKind> = batch.iter().map(|e| e.kind()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        group.bench_function(format!("spool_encode_only_{name}"), |b| {
            b.iter(|| kinds.iter().map(|&kind| encode(kind, black_box(batch)).expect("encode")).collect::<Vec<_>>())
        });
        let records: Vec<_> = kinds.iter().map(|&kind| (kind, encode(kind, batch).expect("encode"))).collect();
        group.bench_function(format!("replay_decode_only_{name}"), |b| {
            b.iter(|| {
                let decoded = records.iter().map(|(kind, records)| decode_batch(*kind, black_box(records)));
                decoded.map(|events| events.expect("decode").len()).sum::<usize>()
            })
        });
    }
    group.finish();
    // Each group carries its kind's schema message: the fixed cost per
    // kind present in a batch.
    for (name, batch) in [("process_sample", &batches[0].1[..1]), ("security_mix", &batches[1].1[..14])] {
        let mut encoded = Vec::new();
        ArrowBatchCodec::new().encode(&batch.to_vec(), &mut encoded).expect("encode");
        sizes.push(format!("{name}, {} events: {} bytes plain", batch.len(), encoded.len()));
    }
    for line in sizes {
        println!("{line}");
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
