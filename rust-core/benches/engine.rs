//! Engine cost (criterion): a start with a failover decision, a plain start/end, and one
//! error-report plus confirming-check cycle. Adapters and registry are in memory, so what is
//! measured is Streamguard's own work.

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::atomic::Ordering;
use std::time::Duration;
use streamguard::{EventKind, HealthStatus, ProviderError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();

    // Plain start + end on the preferred provider.
    let (m, _r, _a) = rt.block_on(async { support::manager(support::config()) });
    c.bench_function("start_and_end", |b| {
        b.to_async(&rt).iter(|| async {
            m.start_stream("s").await.unwrap();
            m.end_stream("s").await.unwrap();
        })
    });
    rt.block_on(m.shutdown()).unwrap();

    // Every start fails on "a" with a provider-fatal error and fails over to "b". A zero
    // cool-down keeps "a" first in line, so each iteration makes a failover decision.
    let mut cfg = support::config();
    cfg.cooldown_base = Duration::ZERO;
    let (m, _r, a) = rt.block_on(async { support::manager(cfg) });
    a[0].fatal.store(true, Ordering::Relaxed);
    c.bench_function("start_with_failover_decision", |b| {
        b.to_async(&rt).iter(|| async {
            let s = m.start_stream("s").await.unwrap();
            assert_eq!(s.provider.as_deref(), Some("b"));
            m.end_stream("s").await.unwrap();
        })
    });
    rt.block_on(m.shutdown()).unwrap();

    // One health-check cycle: a transient error report makes the provider suspect and asks
    // for an immediate check; the check passes and it is healthy again.
    let (m, _r, _a) = rt.block_on(async { support::manager(support::config()) });
    rt.block_on(m.start_stream("s")).unwrap();
    c.bench_function("report_and_confirming_check_cycle", |b| {
        b.to_async(&rt).iter(|| async {
            let mut rx = m.subscribe();
            m.record_error("s", ProviderError::network("blip")).unwrap();
            loop {
                let ev = rx.recv().await.unwrap();
                if matches!(
                    ev.kind,
                    EventKind::HealthChanged {
                        to: HealthStatus::Healthy,
                        ..
                    }
                ) {
                    break;
                }
            }
        })
    });
    rt.block_on(m.shutdown()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
