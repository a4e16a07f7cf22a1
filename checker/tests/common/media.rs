//! Real media servers for the checker's tests: nginx (with the rtmp module and, if asked, an
//! HTTP server) on free loopback ports in its own directory, stopped by SIGTERM to its master
//! PID; ffmpeg publishing a test pattern. Every wait is bounded.

use super::{free_port, run_bounded, signal, wait_until, TempDir};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    pub rtmp_port: u16,
    pub http_port: u16,
    child: Option<Child>,
    pub dir: TempDir,
}

impl Nginx {
    /// nginx with `rtmp_apps` (RTMP `application` blocks) and, unless empty, an HTTP server
    /// with `http_locations` (`location` blocks). `{root}` in either is nginx's directory.
    pub fn start(rtmp_apps: &str, http_locations: &str) -> Self {
        let dir = TempDir::new("nginx");
        let rtmp_port = free_port();
        let http_port = if http_locations.is_empty() {
            0
        } else {
            free_port()
        };
        let root = dir.0.display().to_string();
        let http = if http_locations.is_empty() {
            String::new()
        } else {
            format!(
                "http {{ access_log off; client_body_temp_path {root}/body; \
                 proxy_temp_path {root}/proxy; fastcgi_temp_path {root}/fcgi; \
                 uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;\n\
                 types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}\n\
                 server {{ listen 127.0.0.1:{http_port};\n{locations} }} }}\n",
                locations = http_locations.replace("{root}", &root)
            )
        };
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {root}/nginx.pid;\n\
             error_log {root}/error.log warn;\n\
             load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
             events {{ worker_connections 128; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{rtmp_port}; chunk_size 4096;\n{apps} }} }}\n{http}",
            apps = rtmp_apps.replace("{root}", &root)
        );
        let conf_path = dir.write("nginx.conf", &conf);
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be installed (checker/test.sh installs nginx-light + libnginx-mod-rtmp)");
        let nginx = Self {
            rtmp_port,
            http_port,
            child: Some(child),
            dir,
        };
        for port in [rtmp_port, http_port].into_iter().filter(|p| *p != 0) {
            wait_until(Duration::from_secs(10), "nginx to listen", || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
        nginx
    }

    /// `rtmp://127.0.0.1:PORT/app/key`.
    pub fn url(&self, app: &str, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{key}", self.rtmp_port)
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.http_port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM to the master stops its workers too (SIGKILL would orphan them).
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The ffmpeg arguments of a 320x240, 15 fps H.264 test pattern with a keyframe every second.
const TEST_PATTERN: &[&str] = &[
    "-nostdin",
    "-loglevel",
    "error",
    "-f",
    "lavfi",
    "-i",
    "testsrc=size=320x240:rate=15",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-g",
    "15",
];

/// ffmpeg publishing the test pattern in real time to `url` (FLV over RTMP).
pub struct Publisher(Child);

impl Publisher {
    pub fn start(url: &str) -> Self {
        let child = Command::new("ffmpeg")
            .arg("-re")
            .args(TEST_PATTERN)
            .args(["-f", "flv", url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg must be installed");
        Self(child)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes `seconds` of the test pattern as an MPEG-TS file.
pub fn write_ts_clip(path: &std::path::Path, seconds: u32) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(TEST_PATTERN)
        .args(["-t", &seconds.to_string(), "-f", "mpegts", "-y"])
        .arg(path);
    let o = run_bounded(cmd, Duration::from_secs(60));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Waits (bounded) until ffprobe sees the stream at `url`.
pub fn wait_live(url: &str) {
    wait_until(Duration::from_secs(30), url, || {
        Command::new("ffprobe")
            .args(streamguard::rtmp::FFPROBE_FAST_ARGS)
            .args(streamguard_checker::probe::FFPROBE_OUTPUT_ARGS)
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
}
