//! The one tokio runtime of the bindings. The engine spawns its tasks on whatever runtime it
//! was created in, and foreign executors (asyncio, Kotlin coroutines, Swift tasks) know nothing
//! of tokio, so every engine call is started here and the host only awaits the result.

use crate::errors::StreamguardError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::task::JoinError;
use tokio_util::task::AbortOnDropHandle;

/// Built on first use and never dropped, so work left running when a host object is
/// released (leaving providers, listener tasks) can still finish.
pub(crate) static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("streamguard")
        .enable_all()
        .build()
        .expect("cannot start the streamguard tokio runtime")
});

/// Run `fut` on [`RUNTIME`] and wait for its result from any executor.
///
/// A `JoinHandle` needs no runtime context to be polled, so the foreign side can drive it. A
/// panic inside `fut` comes back as [`StreamguardError::Internal`] rather than unwinding into
/// the host. Dropping the returned future (a cancelled host task) does not cancel `fut`: used
/// for the calls that must run to completion (`end_stream`, `shutdown`).
pub(crate) async fn run<F>(fut: F) -> Result<F::Output, StreamguardError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    joined(HostWoken(RUNTIME.spawn(fut)).await)
}

/// [`run`], except that dropping the returned future aborts `fut`, which drops the engine's
/// future where it is: that is how a cancelled host await (Python task cancellation or
/// `asyncio.wait_for`, Kotlin coroutine cancellation or `withTimeout`) cancels `start_stream`
/// and `join_stream`. UniFFI frees the Rust future of an async call when the awaiting Python
/// or Kotlin coroutine is cancelled; its Swift code never does (the Swift glue ends the
/// stream instead, see `bindings/swift`).
pub(crate) async fn run_cancellable<F>(fut: F) -> Result<F::Output, StreamguardError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    joined(HostWoken(AbortOnDropHandle::new(RUNTIME.spawn(fut))).await)
}

fn joined<T>(result: Result<T, JoinError>) -> Result<T, StreamguardError> {
    result.map_err(|e| StreamguardError::Internal {
        detail: if e.is_panic() {
            format!("panic in streamguard: {}", panic_text(e.into_panic()))
        } else {
            "streamguard task was cancelled".into()
        },
    })
}

/// Wakes of host tasks in progress: a Streamguard thread is inside the host's continuation
/// callback (UniFFI calls it from whichever thread completes the work).
static WAKES_IN_PROGRESS: AtomicUsize = AtomicUsize::new(0);

/// Awaits a future (a task, an event) and counts the wakes it delivers to the host, for
/// [`quiesce`].
pub(crate) struct HostWoken<F>(pub(crate) F);

impl<F: Future + Unpin> Future for HostWoken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let waker = Waker::from(Arc::new(CountingWaker(cx.waker().clone())));
        Pin::new(&mut self.0).poll(&mut Context::from_waker(&waker))
    }
}

struct CountingWaker(Waker);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        WAKES_IN_PROGRESS.fetch_add(1, Ordering::SeqCst);
        self.0.wake_by_ref();
        WAKES_IN_PROGRESS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Block (for at most a second) until no Streamguard thread is inside a host callback that
/// resumes an awaiting host task. Python only (excluded from the Kotlin and Swift bindings):
/// the package's exit hook calls it, because Python 3.11 ends a thread that is still inside
/// such a callback when the interpreter finalizes with `pthread_exit`, which aborts the
/// process when it unwinds through Rust. The wake that resumed the host's last `await` can
/// still be returning from the callback when the host proceeds to exit.
#[uniffi::export]
pub fn quiesce() {
    let deadline = Instant::now() + Duration::from_secs(1);
    while WAKES_IN_PROGRESS.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub(crate) fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let err = block_on(run(async { panic!("boom") })).unwrap_err();
        match err {
            StreamguardError::Internal { detail } => assert!(detail.contains("boom"), "{detail}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dropping_a_cancellable_run_aborts_its_future() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let pending = run_cancellable(async move {
            let _tx = tx; // dropped when the task is aborted
            std::future::pending::<()>().await
        });
        // Start it, then drop the await (a cancelled host task).
        poll_once_then_drop(pending);
        assert!(
            block_on(rx).is_err(),
            "the task was aborted, dropping its sender"
        );
    }

    #[test]
    fn dropping_a_plain_run_lets_its_future_finish() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        poll_once_then_drop(run(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = tx.send(());
        }));
        assert!(block_on(rx).is_ok());
    }

    /// Poll `fut` once (which spawns its task) and drop it while it is still pending.
    fn poll_once_then_drop<F: Future>(fut: F) {
        let mut fut = Box::pin(fut);
        let poll = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(poll.is_pending());
    }

    #[test]
    fn results_come_back_from_a_thread_without_a_runtime() {
        let v = block_on(run(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            7
        }));
        assert_eq!(v.unwrap(), 7);
    }

    /// Drive a future from outside RUNTIME, as a foreign executor would.
    fn block_on<F: Future>(fut: F) -> F::Output {
        // A second runtime only as a plain executor: it is not RUNTIME, so this proves the
        // JoinHandle needs no context of its own.
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }
}
