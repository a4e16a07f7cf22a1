//! Tokens never reach the logs. In its own test binary: tracing caches per-callsite interest
//! process-wide, so capturing logs with a scoped subscriber is only reliable when no other
//! test runs in the same process at the same time.

mod common;

use common::*;
use streamguard::ProviderErrorKind::Timeout;

struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn tokens_never_reach_the_logs() {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || LogBuf(sink.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let b = Backend::start(SEED_LIST);
    let mut c = b.config();
    c.auth_token = Some("tkn-SECRET-9f3".into());
    let m = b.manager(c);
    let t = Trio::register(&m, false);
    t.agora
        .script_connect(vec![Step::Fail(Timeout), Step::Fail(Timeout)]);
    m.start_stream("s1").await.unwrap();
    m.refresh_providers().await.unwrap();
    m.shutdown().await.unwrap();
    let logs = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("failover"), "decisions are logged");
    assert!(logs.contains("redacted"), "the config is logged, redacted");
    assert!(!logs.contains("SECRET"), "token leaked into logs");
}
