//! `streamguard check` on a real-world IPTV playlist, with the probe stub recording the
//! arguments of every probe: attributes and groups reach the JSON and CSV reports, per-stream
//! options reach the probe as `-user_agent`/`-headers` and never as part of the URL, each
//! URL is probed once, unsupported schemes are not probed, junk lines are warnings, Latin-1
//! names survive, secrets stay off stderr, and an HLS media playlist is refused.

mod common;

use common::*;
use std::time::Duration;

/// Windows-1252 bytes: `é` is 0xE9.
const PLAYLIST: &[u8] = b"#EXTM3U x-tvg-url=\"http://epg.example/guide.xml\"\r\n\
#EXTINF:-1, tvg-id=\"news.es\" group-title=\"News\",Noticias 24\r\n\
http://ok.example/news\r\n\
---- Sports ----\r\n\
#EXTINF:-1 tvg-name=\"B\"tvg-id=\"b.it\" tvg-logo=\"http://logo.example/b.png\" group-title=\"Sports\",B Sport\r\n\
http://ok.example/b.m3u8?token=SECRET1|User-Agent=Kodi%2F20.1&Referer=https%3A%2F%2Fref.example%2F\r\n\
#EXTGRP:Sports\r\n\
#EXTVLCOPT:http-user-agent=VLC/3.0 SECRET-UA\r\n\
#EXTVLCOPT:http-origin=https://origin.example\r\n\
#EXTINF:-1 tvg-id=music.se,T\xe9l\xe9 Matin\r\n\
http://ok.example/tele\r\n\
[OFFLINE]\r\n\
#EXTINF:-1 group-title=\"News\",Noticias 24 (copy)\r\n\
http://ok.example/news\r\n\
#EXTINF:-1 group-title=\"News\",Noticias 24 (third)\r\n\
http://ok.example/news\r\n\
#EXTINF:-1 group-title=\"Apps\",Piped\r\n\
pipe:///usr/bin/ffmpeg -i x -f mpegts -\r\n\
#EXTINF:-1 group-title=\"Apps\",Addon\r\n\
plugin://plugin.video.youtube/play/?video_id=x\r\n\
#EXTINF:-1 group-title=\"Sports\",Gone\r\n\
http://gone.example/dead";

#[test]
fn a_real_world_playlist_is_read_probed_once_per_url_with_its_options_and_reported() {
    let dir = TempDir::new("iptv");
    let list = dir.path("list.m3u");
    std::fs::write(&list, PLAYLIST).unwrap();
    let argv_dir = argv_dir(&dir);
    let out = dir.path("out");
    let mut cmd = check_cmd(
        &list,
        &out,
        &["--concurrency", "3", "--retries", "0", "--probe-cmd", STUB],
    );
    cmd.env("STUB_ARGV", &argv_dir);
    let o = run_bounded(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");

    // Probes: one per distinct URL, none for unsupported schemes.
    let calls = stub_argv(&argv_dir);
    let urls: Vec<&str> = calls.iter().map(|c| c.last().unwrap().as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://gone.example/dead",
            "http://ok.example/b.m3u8?token=SECRET1",
            "http://ok.example/news",
            "http://ok.example/tele",
        ]
    );
    let kodi = &calls[1];
    assert_eq!(arg_after(kodi, "-user_agent"), Some("Kodi/20.1"));
    assert_eq!(
        arg_after(kodi, "-headers"),
        Some("Referer: https://ref.example/\r\n")
    );
    let vlc = &calls[3];
    assert_eq!(arg_after(vlc, "-user_agent"), Some("VLC/3.0 SECRET-UA"));
    assert_eq!(
        arg_after(vlc, "-headers"),
        Some("Origin: https://origin.example\r\n")
    );
    let plain = &calls[2];
    assert!(!plain.iter().any(|a| a == "-user_agent" || a == "-headers"));
    for call in &calls {
        // The options come before the URL, which is last and alone.
        assert!(call.iter().all(|a| !a.contains('|')), "{call:?}");
        assert_eq!(call[call.len() - 2], "json", "{call:?}");
    }

    // The JSON report: every entry, in playlist order, with attributes, group and line.
    let r = report_json(&out);
    let s = by_index(&r);
    assert_eq!(r["summary"]["playlist_streams"], 8);
    assert_eq!(r["summary"]["checked"], 8);
    assert_eq!(r["summary"]["unique_urls"], 6);
    let counts = &r["summary"]["counts"];
    assert_eq!(
        (&counts["ok"], &counts["dead"], &counts["unsupported"]),
        (&5.into(), &1.into(), &2.into())
    );
    let news = &s[&0];
    assert_eq!(news["name"], "Noticias 24");
    assert_eq!(news["tvg_id"], "news.es");
    assert_eq!(news["group"], "News");
    assert_eq!(news["line"], 3);
    assert_eq!(news["status"], "ok");
    assert_eq!(news["same_url_as"], serde_json::Value::Null);
    let b = &s[&1];
    assert_eq!(b["name"], "B Sport");
    assert_eq!(b["tvg_name"], "B");
    assert_eq!(b["tvg_id"], "b.it");
    assert_eq!(b["logo"], "http://logo.example/b.png");
    assert_eq!(b["url"], "http://ok.example/b.m3u8?token=SECRET1");
    assert_eq!(b["line"], 6);
    let tele = &s[&2];
    assert_eq!(tele["name"], "Télé Matin");
    assert_eq!(tele["tvg_id"], "music.se");
    assert_eq!(tele["group"], "Sports", "from #EXTGRP");
    for (i, line) in [(3, 14), (4, 16)] {
        assert_eq!(s[&i]["status"], "ok");
        assert_eq!(s[&i]["same_url_as"], 0);
        assert_eq!(s[&i]["line"], line);
        assert_eq!(s[&i]["attempts"], 1, "the shared probe's result");
    }
    for i in [5, 6] {
        assert_eq!(s[&i]["status"], "unsupported");
        assert_eq!(s[&i]["attempts"], 0);
        assert_eq!(s[&i]["group"], "Apps");
    }
    assert_eq!(s[&7]["status"], "dead");
    let groups = &r["summary"]["groups"];
    assert_eq!(groups["News"]["ok"], 3);
    assert_eq!(groups["Sports"]["ok"], 2);
    assert_eq!(groups["Sports"]["dead"], 1);
    assert_eq!(groups["Apps"]["unsupported"], 2);
    let playlist = &r["playlist"];
    assert_eq!(playlist["encoding"], "windows-1252");
    assert_eq!(
        playlist["attributes"]["x-tvg-url"],
        "http://epg.example/guide.xml"
    );
    let warned: Vec<u64> = playlist["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["line"].as_u64().unwrap())
        .collect();
    assert_eq!(warned, [4, 12]);
    assert!(stderr.contains("playlist line 4: not a URL"), "{stderr}");

    // The CSV: the old columns first, unchanged, then the new ones.
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "index,name,url,status,profile,probed_url,video_codec,resolution,fps,bitrate,\
             audio_codec,attempts,profiles_tried,elapsed_ms,error,tvg_id,tvg_name,group,logo,line,same_url_as"
        )
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 8);
    assert!(
        rows[1].ends_with(",b.it,B,Sports,http://logo.example/b.png,6,"),
        "{}",
        rows[1]
    );
    assert!(rows[2].starts_with("2,Télé Matin,"), "{}", rows[2]);
    assert!(rows[3].ends_with(",,,News,,14,0"), "{}", rows[3]);
    assert!(rows[5].contains(",unsupported,"), "{}", rows[5]);

    // No secret on stderr: not the token, not a header value.
    for secret in ["SECRET1", "SECRET-UA", "Kodi/20.1", "ref.example"] {
        assert!(!stderr.contains(secret), "{secret} in {stderr}");
    }
}

#[test]
fn an_hls_media_playlist_is_refused_with_exit_code_2_and_a_clear_message() {
    let dir = TempDir::new("hlsmedia");
    let list = dir.write(
        "index.m3u8",
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXTINF:2.0,\nhttp://h/seg0.ts\n#EXTINF:2.0,\nhttp://h/seg1.ts\n",
    );
    let argv_dir = argv_dir(&dir);
    let out = dir.path("out");
    let mut cmd = check_cmd(&list, &out, &["--no-progress", "--probe-cmd", STUB]);
    cmd.env("STUB_ARGV", &argv_dir);
    let o = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("HLS media playlist (#EXT-X-TARGETDURATION at line 3)"),
        "{stderr}"
    );
    assert!(stub_argv(&argv_dir).is_empty(), "no segment was probed");
    assert!(!out.with_extension("json").exists());
}

#[test]
fn processes_sharing_a_run_through_redis_probe_each_url_once_and_report_every_entry() {
    let redis = RedisServer::start();
    let dir = TempDir::new("dedup-redis");
    // 30 entries over 10 URLs, each URL three times, far apart.
    let entries: Vec<(String, String)> = (0..30)
        .map(|i| {
            (
                format!("e{i}"),
                format!("http://shared.example/u{}", i % 10),
            )
        })
        .collect();
    let list = dir.write("list.m3u", &playlist(&entries));
    let argv_dir = argv_dir(&dir);
    let url = redis.url();
    let children: Vec<_> = (0..2)
        .map(|n| {
            let out = dir.path(&format!("out{n}"));
            let mut cmd = check_cmd(
                &list,
                &out,
                &[
                    "--redis",
                    &url,
                    "--run-id",
                    "dedup",
                    "--concurrency",
                    "2",
                    "--no-progress",
                    "--probe-cmd",
                    STUB,
                ],
            );
            cmd.env("STUB_ARGV", &argv_dir)
                .env("STUB_DELAY", "0.05")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut seen = std::collections::BTreeMap::new();
    for (n, child) in children.into_iter().enumerate() {
        let o = wait_bounded(child, Duration::from_secs(60));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = report_json(&dir.path(&format!("out{n}")));
        assert_eq!(r["summary"]["playlist_streams"], 30);
        for s in r["streams"].as_array().unwrap() {
            let i = s["index"].as_u64().unwrap();
            assert_eq!(s["url"], format!("http://shared.example/u{}", i % 10));
            assert_eq!(s["status"], "ok");
            let first = i % 10;
            let same = if i == first {
                serde_json::Value::Null
            } else {
                first.into()
            };
            assert_eq!(s["same_url_as"], same, "{s:#}");
            assert!(seen.insert(i, n).is_none(), "entry {i} reported twice");
        }
    }
    assert_eq!(seen.len(), 30, "every entry reported once");
    assert_eq!(stub_argv(&argv_dir).len(), 10, "one probe per URL");
}
