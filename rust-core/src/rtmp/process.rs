//! Supervised ffmpeg processes: the one clean-stop path shared by publishers and viewers.
//!
//! ffmpeg quits cleanly on the keystroke `q` read from its stdin (measured: about 15–30 ms for
//! a healthy publisher or viewer on loopback). tokio's `Child::wait` closes the stdin handle
//! the `Child` still holds before it waits, so a supervisor that waits on the child (to notice
//! an unexpected exit) and only later writes `q` writes to nothing: every stop used to wait the
//! whole grace period and end in a kill (issue 12, item 8). [`Proc`] therefore takes stdin out
//! of the `Child` the moment the process is spawned and keeps it until the process is gone.

use crate::error::ProviderError;
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::{debug, warn};

/// Which supervised process of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessKind {
    /// The ffmpeg publishing the stream to the provider's ingest.
    Publisher,
    /// The ffmpeg pulling the stream from the provider's playback URL.
    Viewer,
}

impl ProcessKind {
    fn name(self) -> &'static str {
        match self {
            ProcessKind::Publisher => "publisher",
            ProcessKind::Viewer => "viewer",
        }
    }
}

/// How a supervised process ended when it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// It quit by itself after the `q` keystroke, within the grace period.
    Quit,
    /// It did not quit within the grace period (or could not read the keystroke: a stalled
    /// viewer) and was killed (SIGKILL).
    Killed,
    /// It had already exited before it was asked to stop (that exit was reported through the
    /// error sink).
    AlreadyExited,
}

/// What stopping one supervised process took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// Publisher or viewer.
    pub kind: ProcessKind,
    /// How it ended.
    pub outcome: StopOutcome,
    /// From the stop request to the process reaped.
    pub took: Duration,
    /// Its exit code, when it exited by itself (`None` when killed or ended by a signal).
    pub code: Option<i32>,
}

/// A spawned child whose stdin is held apart from the `Child` (see the module docs), with its
/// stderr forwarded to `tracing` (target `streamguard::rtmp::ffmpeg`).
pub(crate) struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    kind: ProcessKind,
    stream_id: String,
}

impl Proc {
    /// Spawn `cmd` (stdin and stderr are piped here; stdout is the caller's choice) and kill it
    /// if this `Proc` is dropped without being stopped (a cancelled start or join).
    pub(crate) fn spawn(
        mut cmd: Command,
        kind: ProcessKind,
        stream_id: &str,
    ) -> Result<Self, ProviderError> {
        cmd.stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .spawn()
            .map_err(|e| ProviderError::internal(format!("cannot run {program}: {e}")))?;
        // Taken now, before anything can call `Child::wait` (which would close it).
        let stdin = child.stdin.take();
        if let Some(stderr) = child.stderr.take() {
            let id = stream_id.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    debug!(target: "streamguard::rtmp::ffmpeg", stream_id = %id, kind = kind.name(), "{line}");
                }
            });
        }
        debug!(
            stream_id,
            pid = child.id(),
            kind = kind.name(),
            "ffmpeg started"
        );
        Ok(Self {
            child,
            stdin,
            kind,
            stream_id: stream_id.to_string(),
        })
    }

    /// Its process id (while it runs).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Wait for it to exit on its own. Cancel-safe; leaves stdin open.
    pub(crate) async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Its stdout, if it was piped and not taken yet.
    pub(crate) fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Its exit status if it has exited.
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kill it now and reap it (for a process that never got going: a failed start or join).
    pub(crate) async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Ask it to quit (`q` on stdin) and kill it if it has not exited after `grace`.
    pub(crate) async fn stop(&mut self, grace: Duration) -> StopReport {
        let asked = Instant::now();
        let report = |outcome, code| StopReport {
            kind: self.kind,
            outcome,
            took: asked.elapsed(),
            code,
        };
        if let Ok(Some(status)) = self.child.try_wait() {
            return report(StopOutcome::AlreadyExited, status.code());
        }
        let (stdin, child) = (&mut self.stdin, &mut self.child);
        let quit = async {
            if let Some(stdin) = stdin.as_mut() {
                // A child that already closed its stdin fails the write: it is then killed.
                let _ = stdin.write_all(b"q").await;
                let _ = stdin.flush().await;
            }
            child.wait().await
        };
        let (outcome, code) = match tokio::time::timeout(grace, quit).await {
            Ok(Ok(status)) => (StopOutcome::Quit, status.code()),
            Ok(Err(_)) | Err(_) => {
                if let Err(e) = self.child.kill().await {
                    warn!(stream_id = %self.stream_id, error = %e, "cannot kill ffmpeg");
                }
                (StopOutcome::Killed, None)
            }
        };
        self.stdin = None;
        let r = report(outcome, code);
        debug!(stream_id = %self.stream_id, kind = self.kind.name(), ?r, "ffmpeg stopped");
        r
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str) -> Proc {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).stdout(std::process::Stdio::null());
        Proc::spawn(cmd, ProcessKind::Publisher, "t").unwrap()
    }

    /// Like ffmpeg: reads keystrokes from stdin, quits on `q`, and does not quit when stdin is
    /// closed (reads at EOF return nothing, it just carries on).
    const QUITS_ON_Q: &str =
        "while :; do c=$(dd bs=1 count=1 2>/dev/null); [ \"$c\" = q ] && exit 0; [ -z \"$c\" ] && sleep 0.05; done";

    #[tokio::test]
    async fn the_keystroke_reaches_a_child_that_was_being_waited_on() {
        let mut p = sh(QUITS_ON_Q);
        // What the supervisor does: wait on the child until asked to stop. This closed stdin
        // (issue 12, item 8) so the `q` below never arrived and the child was killed at 2 s.
        assert!(tokio::time::timeout(Duration::from_millis(100), p.exited())
            .await
            .is_err());
        let r = p.stop(Duration::from_secs(2)).await;
        assert_eq!(r.outcome, StopOutcome::Quit, "{r:?}");
        assert_eq!(r.code, Some(0));
        assert!(r.took < Duration::from_secs(1), "{r:?}");
    }

    #[tokio::test]
    async fn a_child_that_ignores_the_keystroke_is_killed_at_the_grace() {
        let mut p = sh("exec sleep 30");
        let grace = Duration::from_millis(300);
        let r = p.stop(grace).await;
        assert_eq!(r.outcome, StopOutcome::Killed, "{r:?}");
        assert!(
            r.took >= grace && r.took < grace + Duration::from_secs(1),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_child_that_already_exited_is_not_asked() {
        let mut p = sh("exit 3");
        let _ = p.exited().await;
        let r = p.stop(Duration::from_secs(2)).await;
        assert_eq!(r.outcome, StopOutcome::AlreadyExited);
        assert_eq!(r.code, Some(3));
    }
}
