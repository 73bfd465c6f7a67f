//! Benchmarks of `overlay-layout`, group `overlay-layout`: layer id
//! validation, link id generation, and `lower` chains at the lengths that
//! matter (1, Docker's limit of 128, the new mount API's 500, and 16 for a
//! typical image).
//!
//! Run with `cargo bench -p benches --bench layout`.

use std::hint::black_box;

use benches::{HEX_LAYER_ID, link_chain, link_id};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use overlay_layout::{DepthLimit, LayerId, LinkId, Lower};

/// Chain lengths: one layer, a typical image, Docker's depth limit, the
/// kernel's `lowerdir+` limit.
const CHAIN_LENGTHS: [usize; 4] = [1, 16, 128, 500];

fn layout(c: &mut Criterion) {
    let mut group = c.benchmark_group("overlay-layout");

    group.bench_function("LayerId::new/64-hex", |b| {
        b.iter(|| LayerId::new(black_box(HEX_LAYER_ID)));
    });

    group.bench_function("LinkId::generate", |b| b.iter(LinkId::generate));

    for len in CHAIN_LENGTHS {
        let lower = Lower::new(link_chain(len)).expect("a non-empty chain");
        let text = lower.format();
        group.throughput(Throughput::Elements(len as u64));
        group.bench_with_input(BenchmarkId::new("Lower::parse", len), text.as_bytes(), |b, text| {
            b.iter(|| Lower::parse(black_box(text)));
        });
        group.bench_with_input(BenchmarkId::new("Lower::format", len), &lower, |b, lower| {
            b.iter(|| black_box(lower).format());
        });
    }

    // A child whose chain has `len` entries: the parent's link first, then
    // the parent's own chain of `len - 1` (none for a child of a base layer).
    for len in CHAIN_LENGTHS {
        let parent_link = link_id(len as u64);
        let parent_lower = (len > 1).then(|| Lower::new(link_chain(len - 1)).expect("a non-empty chain"));
        group.throughput(Throughput::Elements(len as u64));
        group.bench_with_input(
            BenchmarkId::new("Lower::child_of", len),
            &parent_lower,
            |b, parent_lower| {
                b.iter(|| {
                    Lower::child_of(
                        black_box(parent_link),
                        black_box(parent_lower.as_ref()),
                        DepthLimit::NEW_MOUNT_API,
                    )
                });
            },
        );
    }

    group.finish();
}

/// The harness: `criterion_group!` makes a public function without docs,
/// so it lives in a private module.
mod harness {
    criterion::criterion_group!(benches, super::layout);
}

criterion_main!(harness::benches);
