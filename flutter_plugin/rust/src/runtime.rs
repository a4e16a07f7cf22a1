//! The one tokio runtime of the plugin. The engine spawns its tasks on whatever runtime it was
//! created in, and Dart knows nothing of tokio, so every engine call is started here and the
//! generated glue only awaits the result (flutter_rust_bridge's own executor polls it).

use crate::api::types::StreamguardError;
use std::future::Future;
use std::sync::LazyLock;
use tokio::runtime::Runtime;

/// Built on first use and never dropped, so work left running when Dart releases a manager
/// (leaving providers, event forwarding) can still finish.
pub(crate) static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("streamguard")
        .enable_all()
        .build()
        .expect("cannot start the streamguard tokio runtime")
});

/// Run `fut` on [`RUNTIME`] and wait for its result from any executor. A panic inside `fut`
/// comes back as an `Internal` error instead of unwinding into the generated glue. Dropping
/// the returned future does not cancel `fut`: engine operations run to completion, and
/// `end_stream` is the way to cancel a start.
pub(crate) async fn run<F>(fut: F) -> Result<F::Output, StreamguardError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNTIME.spawn(fut).await.map_err(|e| {
        StreamguardError::internal(if e.is_panic() {
            format!("panic in streamguard: {}", panic_text(e.into_panic()))
        } else {
            "streamguard task was cancelled".into()
        })
    })
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
    use crate::api::types::StreamguardErrorKind;

    fn block_on<F: Future>(fut: F) -> F::Output {
        // A second runtime only as a plain executor, as flutter_rust_bridge's would be.
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let err = block_on(run(async { panic!("boom") })).unwrap_err();
        assert_eq!(err.kind, StreamguardErrorKind::Internal);
        assert!(err.message.contains("boom"), "{}", err.message);
    }

    #[test]
    fn results_come_back_to_another_executor() {
        let v = block_on(run(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            7
        }));
        assert_eq!(v.unwrap(), 7);
    }
}
