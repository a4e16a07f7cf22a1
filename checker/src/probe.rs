//! Probing one URL with ffprobe (or a stand-in with the same arguments) as a child process,
//! bounded by a timeout after which the child is killed, and reading its JSON answer.

use crate::m3u::{self, StreamOptions};
use serde::Serialize;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// What the checker asks ffprobe for, after the engine's fast-probe options
/// ([`streamguard::rtmp::FFPROBE_FAST_ARGS`]): streams and format, as JSON.
pub const FFPROBE_OUTPUT_ARGS: &[&str] = &["-show_streams", "-show_format", "-of", "json"];

/// At most this much of ffprobe's output is kept; a stream's description is a few KiB.
const MAX_OUTPUT: u64 = 1 << 20;

/// What a healthy stream looks like.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamInfo {
    /// Video codec (`h264`), if there is a video stream.
    pub video_codec: Option<String>,
    /// Width in pixels.
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
    /// Frames per second.
    pub fps: Option<f64>,
    /// Bits per second: the container's, or the video stream's.
    pub bitrate: Option<u64>,
    /// Audio codec (`aac`), if there is an audio stream.
    pub audio_codec: Option<String>,
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The stream answered with at least one audio or video stream.
    Alive(StreamInfo),
    /// ffprobe failed or found nothing; the reason is its last error line.
    Dead(String),
    /// No answer within the timeout; the child was killed.
    TimedOut,
    /// ffprobe gave up by itself on a connection that went silent (its `-rw_timeout`: a
    /// server that accepts and never answers, or sends headers and stalls); its error line.
    Stalled(String),
}

/// ffprobe's input options for a stream's HTTP options: `-user_agent UA` and
/// `-headers "Name: value\r\n..."`. Only for `http`/`https` URLs (the options of ffmpeg's HTTP
/// protocol; HLS goes through it too); other protocols get none.
pub fn option_args(url: &str, options: &StreamOptions) -> Vec<String> {
    let mut args = Vec::new();
    if !matches!(m3u::scheme(url).as_deref(), Some("http" | "https")) {
        return args;
    }
    if let Some(ua) = &options.user_agent {
        args.extend(["-user_agent".to_string(), ua.clone()]);
    }
    if !options.headers.is_empty() {
        let headers: String = options
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        args.extend(["-headers".to_string(), headers]);
    }
    args
}

/// Runs the probe program on `url` with the fast-probe options, the stream's [`option_args`]
/// and [`FFPROBE_OUTPUT_ARGS`]. `Err` only when the program could not be started at all
/// (which no retry can fix). An error message never holds the URL's query string or
/// credentials ([`m3u::redact`]).
pub async fn probe(
    program: &str,
    url: &str,
    options: &StreamOptions,
    timeout: Duration,
) -> Result<Outcome, String> {
    let mut child = Command::new(program)
        .args(streamguard::rtmp::FFPROBE_FAST_ARGS)
        .args(option_args(url, options))
        .args(FFPROBE_OUTPUT_ARGS)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // If this future is dropped (Ctrl-C, a lost lease), the probe dies with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run probe program {program:?}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = (&mut stdout).take(MAX_OUTPUT);
        let mut stderr = (&mut stderr).take(MAX_OUTPUT);
        let (o, e, status) = tokio::join!(
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err),
            child.wait()
        );
        (o.and(e).and(status), out, err)
    };
    let (status, out, err) = match tokio::time::timeout(timeout, run).await {
        Ok(done) => done,
        Err(_) => {
            let _ = child.start_kill();
            // Reap it so no zombie is left; a killed child exits at once.
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            return Ok(Outcome::TimedOut);
        }
    };
    let status = status.map_err(|e| format!("probe I/O: {e}"))?;
    let reason = || {
        let text = String::from_utf8_lossy(&err).replace(url, &m3u::redact(url));
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        last.map_or_else(
            || format!("probe exited with {status}"),
            |l| l.trim().to_string(),
        )
    };
    if !status.success() {
        let reason = reason();
        if reason.to_ascii_lowercase().ends_with("timed out") {
            return Ok(Outcome::Stalled(reason));
        }
        return Ok(Outcome::Dead(reason));
    }
    Ok(match parse(&out) {
        Some(info) => Outcome::Alive(info),
        None => Outcome::Dead(format!("no audio or video stream found ({})", reason())),
    })
}

/// Reads ffprobe's `-of json` output; `None` when it lists no audio or video stream.
pub fn parse(json: &[u8]) -> Option<StreamInfo> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let streams = v.get("streams")?.as_array()?;
    let of_type = |t: &str| {
        streams
            .iter()
            .find(|s| s.get("codec_type").and_then(|c| c.as_str()) == Some(t))
    };
    let video = of_type("video");
    let audio = of_type("audio");
    if video.is_none() && audio.is_none() {
        return None;
    }
    let text = |s: Option<&serde_json::Value>, k: &str| {
        s.and_then(|s| s.get(k))
            .and_then(|x| x.as_str())
            .map(str::to_string)
    };
    let number = |s: Option<&serde_json::Value>, k: &str| {
        s.and_then(|s| s.get(k)).and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|t| t.parse().ok()))
        })
    };
    let fps = ["avg_frame_rate", "r_frame_rate"]
        .iter()
        .find_map(|k| text(video, k).and_then(|r| rate(&r)));
    Some(StreamInfo {
        video_codec: text(video, "codec_name"),
        width: number(video, "width").and_then(|w| u32::try_from(w).ok()),
        height: number(video, "height").and_then(|h| u32::try_from(h).ok()),
        fps,
        bitrate: number(v.get("format"), "bit_rate").or_else(|| number(video, "bit_rate")),
        audio_codec: text(audio, "codec_name"),
    })
}

/// `"30000/1001"` → 29.97; `"0/0"` (unknown) → None.
fn rate(r: &str) -> Option<f64> {
    let (n, d) = r.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    let fps = (n / d * 100.0).round() / 100.0;
    // `1e308/1e-308` overflows to infinity; a report must not carry it (nor a rate that
    // rounds to zero).
    (n > 0.0 && d > 0.0 && fps.is_finite() && fps > 0.0).then_some(fps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_video_audio_and_bitrate() {
        let json = br#"{"streams":[
            {"index":0,"codec_type":"video","codec_name":"h264","width":320,"height":240,"avg_frame_rate":"0/0","r_frame_rate":"30000/1001","bit_rate":"500000"},
            {"index":1,"codec_type":"audio","codec_name":"aac"}],
            "format":{"format_name":"flv","bit_rate":"628000"}}"#;
        assert_eq!(
            parse(json),
            Some(StreamInfo {
                video_codec: Some("h264".into()),
                width: Some(320),
                height: Some(240),
                fps: Some(29.97),
                bitrate: Some(628_000),
                audio_codec: Some("aac".into()),
            })
        );
    }

    #[test]
    fn audio_only_is_alive_and_nothing_is_dead() {
        let audio = br#"{"streams":[{"codec_type":"audio","codec_name":"mp3"}],"format":{}}"#;
        let info = parse(audio).unwrap();
        assert_eq!(info.audio_codec.as_deref(), Some("mp3"));
        assert_eq!(info.video_codec, None);
        assert_eq!(parse(br#"{"streams":[],"format":{}}"#), None);
        assert_eq!(parse(br#"{"streams":[{"codec_type":"data"}]}"#), None);
        assert_eq!(parse(b"not json"), None);
        assert_eq!(rate("15/1"), Some(15.0));
        // The `ffprobe` fuzz target found a rate that rounds to 0 fps (fuzz/corpus/ffprobe/
        // crash-fps-rounds-to-zero); one that overflows gave infinity. Both were `Some`.
        assert_eq!(
            rate("30000/10088888888888888888888888888888888888888881"),
            None
        );
        assert_eq!(rate("1/1000"), None);
        assert_eq!(rate("1e308/1e-308"), None);
        assert_eq!(rate("x"), None);
    }

    #[test]
    fn http_options_become_user_agent_and_headers_arguments() {
        let mut o = StreamOptions::default();
        assert!(option_args("http://h/a", &o).is_empty());
        o.set("User-Agent", "UA/1");
        o.set("Referer", "https://r/");
        o.set("Origin", "https://o");
        assert_eq!(
            option_args("HTTPS://h/a", &o),
            [
                "-user_agent",
                "UA/1",
                "-headers",
                "Referer: https://r/\r\nOrigin: https://o\r\n"
            ]
        );
        assert!(option_args("rtmp://h/live/a", &o).is_empty());
    }

    #[tokio::test]
    async fn a_failing_probe_reports_its_error_without_the_query_string_and_stalls_apart() {
        let dir = std::env::temp_dir().join(format!("sg-probe-err-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = "http://user:pw@h/live.ts?token=SECRET";
        let cases = [
            (
                "Server returned 403 Forbidden (access denied)",
                Outcome::Dead(
                    "http://h/live.ts?...: Server returned 403 Forbidden (access denied)".into(),
                ),
            ),
            (
                "Connection timed out",
                Outcome::Stalled("http://h/live.ts?...: Connection timed out".into()),
            ),
        ];
        for (n, (error, want)) in cases.into_iter().enumerate() {
            let script = dir.join(format!("fail{n}.sh"));
            let body = format!("#!/bin/sh\nfor u; do :; done\necho \"$u: {error}\" >&2\nexit 1\n");
            std::fs::write(&script, body).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            let none = StreamOptions::default();
            let got = probe(script.to_str().unwrap(), url, &none, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(got, want);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error_and_a_hang_is_killed() {
        let none = StreamOptions::default();
        let e = probe("/nonexistent/ffprobe", "x", &none, Duration::from_secs(1)).await;
        assert!(e.unwrap_err().contains("cannot run probe program"));
        // A stand-in that ignores ffprobe's arguments, records its PID and hangs.
        let dir = std::env::temp_dir().join(format!("sg-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("hang.sh");
        std::fs::write(&script, "#!/bin/sh\necho $$ > \"$0.pid\"\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let start = std::time::Instant::now();
        let got = probe(
            script.to_str().unwrap(),
            "x",
            &none,
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert_eq!(got, Outcome::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(dir.join("hang.sh.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed and reaped: the PID is gone.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
