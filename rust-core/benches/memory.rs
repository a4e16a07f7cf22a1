//! Memory per live session: bytes allocated by the engine for 10,000 live sessions, counted by
//! a global allocator wrapper (adapters and registry are in memory and allocate nothing per
//! session).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    const N: usize = 10_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (m, _r, _a) = support::manager(support::config());
        // Warm up: first list read, first adapter init, monitor task.
        m.start_stream("warm").await.unwrap();
        tokio::task::yield_now().await;
        let before = LIVE.load(Ordering::Relaxed);
        for i in 0..N {
            m.join_stream(&format!("stream-{i:05}")).await.unwrap();
        }
        tokio::task::yield_now().await;
        let after = LIVE.load(Ordering::Relaxed);
        let per = (after - before) as f64 / N as f64;
        println!(
            "memory per live session: {per:.0} bytes ({N} sessions, {} KiB in all)",
            (after - before) / 1024
        );
        m.shutdown().await.unwrap();
    });
}
